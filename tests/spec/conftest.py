"""The spec files under real_specs/ are data for test_real_specs.py, not builds to run: the
plugin would otherwise collect every `*.spec` file as a build test."""

collect_ignore_glob = ["real_specs/*"]

"""Root conftest: fixtures shared by the test suites (real filesystems, daemons, images).

Each module under tests/fixtures/ owns one real part and cleans up what it creates.
"""

pytest_plugins = [
    "pytester",
    "tests.fixtures.root",
    "tests.fixtures.stores",
    "tests.fixtures.rsync",
    "tests.fixtures.btrfs",
    "tests.fixtures.overlayfs",
    "tests.fixtures.zfs",
    "tests.fixtures.busybox",
    "tests.fixtures.registry",
    "tests.fixtures.run_dir",
]

"""The pytest11 entry point. Collection of `*.spec` files arrives with the builder."""

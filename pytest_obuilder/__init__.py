"""pytest plugin: build specs as test items through a shared, cached builder."""

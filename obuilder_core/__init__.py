"""OBuilder in Python: build specs, cached step snapshots, runc sandboxes."""

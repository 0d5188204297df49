# The two commands of the README's Quick start. Each installs what it needs first.
VENV := .venv/bin
BUSYBOX_OCI := build/busybox-oci

.PHONY: setup demo test lint busybox debian-image

setup:
	./scripts/setup.sh

# The busybox base image the examples and tests build on, imported into the default store.
busybox: setup
	$(VENV)/python scripts/build-busybox-image.py $(BUSYBOX_OCI)
	$(VENV)/obuilder image import busybox $(BUSYBOX_OCI)

# The Debian image of examples/debian/ (debootstrap; needs Debian's package mirror).
debian-image: setup
	./scripts/make-debian-image.sh

demo: busybox
	$(VENV)/pytest examples/

test: setup
	./scripts/test.sh

lint: setup
	$(VENV)/ruff check .
	$(VENV)/mypy

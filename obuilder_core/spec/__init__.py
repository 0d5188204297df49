"""The spec language: model, parser, canonical printer, validation, Dockerfile conversion."""

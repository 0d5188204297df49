"""The spec language: model, parser, canonical printer, validation, Dockerfile conversion."""

from obuilder_core.spec.errors import SpecError
from obuilder_core.spec.fmt import format_spec
from obuilder_core.spec.parser import check_spec, load_spec, parse_spec, validate_spec
from obuilder_core.spec.printer import heading, print_op, print_spec
from obuilder_core.spec.reader import format_atom, ocaml_string

__all__ = [
    "SpecError",
    "check_spec",
    "format_atom",
    "format_spec",
    "heading",
    "load_spec",
    "ocaml_string",
    "parse_spec",
    "print_op",
    "print_spec",
    "validate_spec",
]

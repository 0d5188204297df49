"""`obuilder fmt`: a spec file's canonical text, with the comments it was written with."""

from __future__ import annotations

from obuilder_core.spec.comments import collect_comments
from obuilder_core.spec.parser import parse_spec
from obuilder_core.spec.printer import print_spec
from obuilder_core.spec.reader import decode_source, many_objects


def format_spec(data: str | bytes, filename: str = "<spec>") -> str:
    """The canonical text of the spec in `data` (`print_spec`'s layout), keeping its comments.

    Comments have no place in the model a spec parses to, so they are found in the text and
    printed next to the forms they were written next to; formatting the result again gives
    it back unchanged. Raises SpecError for a spec that does not parse.
    """
    text = decode_source(data, filename)
    spec = parse_spec(text, filename)
    with many_objects():  # a form per atom: a big commented spec makes a lot of them
        comments = collect_comments(text)
    return print_spec(spec, comments)

"""The layout of a spec's text: where each list starts and ends, and where its comments are.

The reader (`reader.py`) keeps what a spec means and throws away how it was written. Two jobs
need the rest: `fmt`, which keeps comments, and the error for a missing `)`, which looks at
indentation to guess which `(` was left open. Both are rare next to reading, so this is a
second, separate pass over the text, run only when they need it.

The scanner lexes as the reader does (strings with escapes, `;` line comments, nesting
`#| ... |#` block comments with strings inside, `#;` datum comments), but it never fails:
text the reader would refuse still gives a layout, with unclosed lists ending at the end of
the text.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""[ \t\n\r\f]*
    (?: (?P<open>\()
      | (?P<close>\))
      | (?P<string>"(?:[^"\\]|\\.)*"?)
      | (?P<line>;[^\n]*)
      | (?P<block>\#\|)
      | (?P<datum>\#;)
      | (?P<atom>[^ \t\n\r\f()";]+)
      | (?P<end>\Z))""",
    re.VERBOSE | re.DOTALL,
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_BLOCK_TOKEN = re.compile(r'\#\||\|\#|"')
_BLANKS = " \t\r\f"


@dataclass(eq=False, slots=True)
class Form:
    """A list or an atom as written: its offsets (`end` is just past its last character),
    the line and column it starts at, and, for a list, its items and leading atom."""

    start: int
    end: int
    line: int
    col: int
    end_line: int
    is_list: bool
    head: str | None = None
    items: list[Form] = field(default_factory=list)
    # For lists: the column of the `(` as shown (tabs expanded), and the first later line
    # whose first form starts at or left of it.
    indent: int = 0
    dedent_line: int | None = None

    _starts: list[int] | None = field(default=None, repr=False)

    def contains(self, offset: int) -> bool:
        """Whether `offset` is strictly inside this form."""
        return self.start < offset < self.end

    def item_before(self, offset: int) -> int:
        """The index of the last item that starts before `offset` (-1 if none)."""
        if self._starts is None or len(self._starts) != len(self.items):
            self._starts = [f.start for f in self.items]
        return bisect.bisect_left(self._starts, offset) - 1


@dataclass(frozen=True)
class SourceComment:
    """A comment as written (`; ...`, `#| ... |#` or `#; FORM`), with its place in the text.

    `own_line`: nothing but blanks comes before it on its first line.
    """

    start: int
    end: int
    line: int
    end_line: int
    text: str
    own_line: bool

    @property
    def ends_line(self) -> bool:
        """Whether the comment runs to the end of its line, so nothing may follow it there."""
        return self.text.startswith(";")


@dataclass
class Layout:
    """The top-level forms of a text, its comments in text order, and the lists that were
    still open at the end of the text (outermost first)."""

    forms: list[Form]
    comments: list[SourceComment]
    unclosed: list[Form]

    def lists(self) -> list[Form]:
        """Every list, at any depth, in text order."""
        out: list[Form] = []
        todo = [f for f in reversed(self.forms) if f.is_list]
        while todo:
            form = todo.pop()
            out.append(form)
            todo.extend(f for f in reversed(form.items) if f.is_list)
        return out


@dataclass
class _Open:
    """A list being scanned, and the `#;` comments waiting for their form."""

    form: Form
    datums: list[int] = field(default_factory=list)


class _Scanner:
    """One pass over the text, tracking the line, with an explicit stack of open lists."""

    def __init__(self, text: str, dedents: bool) -> None:
        self.text = text
        self.dedents = dedents
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.comments: list[SourceComment] = []
        self.root = _Open(Form(-1, len(text), 0, 0, 0, True))
        self.stack = [self.root]

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.line_starts, offset)

    def starts_line(self, offset: int, line: int) -> bool:
        return self.text[self.line_starts[line - 1] : offset].strip(_BLANKS) == ""

    def form(self, start: int, end: int, line: int, end_line: int, is_list: bool) -> Form:
        col = start - self.line_starts[line - 1] + 1
        return Form(start, end, line, col, end_line, is_list)

    def comment(self, start: int, end: int, line: int, end_line: int) -> None:
        text = self.text[start:end]
        if text.startswith(";"):
            text = text.rstrip(" \t\r\f")
        own = self.starts_line(start, line)
        self.comments.append(SourceComment(start, end, line, end_line, text, own))

    def note_line_start(self, offset: int, line: int) -> None:
        """A list whose later line starts at or left of its own column was probably closed
        before that line, whatever its parentheses say."""
        if not self.starts_line(offset, line):
            return
        col = self.indent_of(offset, line)
        for frame in self.stack[1:]:
            form = frame.form
            if form.dedent_line is None and form.line < line and col <= form.indent:
                form.dedent_line = line

    def note_closing(self, offset: int, line: int) -> None:
        """A `)` that starts a line left of the `(` it closes was written for an outer list:
        the one it closes was probably left open."""
        form = self.stack[-1].form
        if (
            form.dedent_line is None
            and self.starts_line(offset, line)
            and self.indent_of(offset, line) < form.indent
        ):
            form.dedent_line = line

    def indent_of(self, offset: int, line: int) -> int:
        """The column of `offset` as an editor shows it, tabs stopping every 8 columns."""
        return len(self.text[self.line_starts[line - 1] : offset].expandtabs(8)) + 1

    def add(self, form: Form) -> None:
        """A complete form: an item of the open list, unless a `#;` comments it out."""
        top = self.stack[-1]
        if top.datums:
            start = top.datums.pop()
            self.comment(start, form.end, self.line_of(start), form.end_line)
        else:
            top.form.items.append(form)
            if len(top.form.items) == 1 and not form.is_list:
                top.form.head = self.atom_value(form)

    def atom_value(self, form: Form) -> str:
        raw = self.text[form.start : form.end]
        return raw[1:-1] if raw.startswith('"') and "\\" not in raw else raw

    def block_end(self, start: int) -> int:
        depth, i = 1, start + 2
        while True:
            m = _BLOCK_TOKEN.search(self.text, i)
            if m is None:
                return len(self.text)
            if m[0] == '"':
                s = _STRING.match(self.text, m.start())
                i = s.end() if s else m.end()
                continue
            depth += 1 if m[0] == "#|" else -1
            i = m.end()
            if depth == 0:
                return i

    def scan(self) -> Layout:
        text, i, line = self.text, 0, 1
        while i < len(text):
            m = _TOKEN.match(text, i)
            assert m is not None  # every character starts one of the tokens
            kind = m.lastgroup or "end"
            start, i = m.start(kind), m.end()
            line += text.count("\n", m.start(), start)
            if kind == "end":
                break
            if self.dedents and kind in ("open", "string", "atom"):
                self.note_line_start(start, line)
            if kind == "open":
                form = self.form(start, len(text), line, line, True)
                form.indent = self.indent_of(start, line)
                self.stack.append(_Open(form))
            elif kind == "close" and len(self.stack) > 1:
                if self.dedents:
                    self.note_closing(start, line)
                done = self.stack.pop().form
                done.end, done.end_line = i, line
                self.add(done)
            elif kind in ("string", "atom"):
                lines = text.count("\n", start, i) if kind == "string" else 0
                self.add(self.form(start, i, line, line + lines, False))
                line += lines
            elif kind == "line":
                self.comment(start, i, line, line)
            elif kind == "block":
                i = self.block_end(start)
                lines = text.count("\n", start, i)
                self.comment(start, i, line, line + lines)
                line += lines
            elif kind == "datum":
                self.stack[-1].datums.append(start)
        unclosed = [frame.form for frame in self.stack[1:]]
        for frame in reversed(self.stack[1:]):
            frame.form.end_line = line
        while len(self.stack) > 1:
            self.add(self.stack.pop().form)
        return Layout(self.root.form.items, _outermost(self.comments), unclosed)


def _outermost(comments: list[SourceComment]) -> list[SourceComment]:
    """The comments in text order, minus those inside another one (a `#;` that comments out
    a list holding comments records them all)."""
    out: list[SourceComment] = []
    for c in sorted(comments, key=lambda c: (c.start, -c.end)):
        if out and c.start < out[-1].end:
            continue
        out.append(c)
    return out


def scan(text: str, *, dedents: bool = False) -> Layout:
    """The layout of `text` (already decoded, without a byte order mark); with `dedents`,
    each list's `dedent_line` too."""
    return _Scanner(text, dedents).scan()


@dataclass(frozen=True)
class UnclosedGuess:
    """The `(` most likely left open, and the line whose indentation says so (None when the
    guess is only that the innermost list open at the end of the text is the one)."""

    offset: int
    dedent_line: int | None


def guess_unclosed(text: str) -> UnclosedGuess | None:
    """Which `(` a missing `)` belongs to, for a text whose lists are not all closed.

    Read literally, a `)` missing in the middle of a spec leaves the outermost `(` open: every
    later `)` closes the list before the one it was written for. The indentation tells more:
    the form that was left open is the one whose following lines dedent to its column (or
    further left) while the parentheses say it is still open. Among the lists inside the
    innermost one left open at the end, the guess is the one dedented first, the innermost
    of those on a tie. Without such a list, the innermost open list is the guess.
    """
    layout = scan(text, dedents=True)
    if not layout.unclosed:
        return None
    innermost = layout.unclosed[-1]
    dedented = [
        f for f in layout.lists() if f.dedent_line is not None and f.start >= innermost.start
    ]
    if not dedented:
        return UnclosedGuess(innermost.start, None)
    best = min(dedented, key=lambda f: (f.dedent_line or 0, -f.start))
    return UnclosedGuess(best.start, best.dedent_line)

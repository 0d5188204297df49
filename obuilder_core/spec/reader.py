"""S-expression reader for spec files: sexplib syntax, every form tagged with its position.

Accepted syntax (as sexplib's): atoms, `( ... )` lists, `"..."` strings with OCaml escapes
(`\\n \\t \\b \\r \\\\ \\" \\' \\<space> \\ddd \\xhh`, backslash-newline continuation; other
escapes are kept literally), `;` line comments, nesting `#| ... |#` block comments and `#;`
datum comments. The reader never recurses, so no input can exhaust the Python stack; lists
nested more than MAX_DEPTH deep are refused instead.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from obuilder_core.spec.errors import SpecError, clip
from obuilder_core.spec.layout import guess_unclosed
from obuilder_core.spec.model import Pos

# A real spec nests about 8 deep per stage; this leaves room for dozens of nested stages.
MAX_DEPTH = 100

WHITESPACE = " \t\n\r\f"
_ATOM_END = re.compile(r"[ \t\n\r\f()\";]")
# One token after blanks: parentheses, a string without escapes, a run of plain atoms, or
# the start of something rarer (`;` comment, escaped string, `#|`, `#;`: at a token's start
# only; inside an atom they are an error or plain characters, as in sexplib).
_TOKEN = re.compile(
    r"""[ \t\n\r\f]*(?:
      (?P<open>\()
    | (?P<close>\))
    | (?P<plain>"[^"\\]*")
    | (?P<other>[;"]|\#[|;])
    | (?P<atoms>[^ \t\n\r\f()";](?:[^()";]*[^ \t\n\r\f()";])?)
    )""",
    re.VERBOSE,
)
# A `#|` or `#;` at the start of a token, inside a run matched as atoms: it ends the run.
_COMMENT_START = re.compile(r"(?<![^ \t\n\r\f])\#[|;]")
_OPEN, _CLOSE, _PLAIN, _OTHER, _ATOMS = range(1, 6)  # _TOKEN's groups, by number
_LAZY_WORDS = 16  # runs longer than this stay strings until someone asks for their Atoms
_WORD = re.compile(r"[^ \t\n\r\f]+")
# Characters str.split() takes for blanks that are atom characters in a spec.
_OTHER_BLANKS = re.compile("[\v\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def _words(chunk: str) -> list[str]:
    """The atoms of a run of blanks and atoms (str.split where it agrees with the syntax)."""
    if _OTHER_BLANKS.search(chunk) is None:
        return chunk.split()
    return _WORD.findall(chunk)


class _Run:
    """Where the atoms of one run were read, for their positions (worked out when asked)."""

    __slots__ = ("chunk", "reader", "start")

    def __init__(self, reader: _Reader, start: int, chunk: str) -> None:
        self.reader, self.start, self.chunk = reader, start, chunk

    def pos(self, index: int) -> Pos:
        for k, m in enumerate(_WORD.finditer(self.chunk)):
            if k == index:
                return self.reader.pos(self.start + m.start())
        raise IndexError(index)


_STRING_SPECIAL = re.compile(r"[\"\\]")
_SIMPLE_ESCAPES = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "n": "\n",
    "t": "\t",
    "b": "\b",
    "r": "\r",
    " ": " ",
}
_HEX = "0123456789abcdefABCDEF"


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b"}


# --- atoms ---------------------------------------------------------------------------------


def needs_quotes(s: str) -> bool:
    """Whether sexplib quotes `s`: empty, blank, `()";\\`, `#|`, `|#`, control or non-ASCII."""
    if not s or "#|" in s or "|#" in s:
        return True
    return any(c in '()";\\' or ord(c) <= 32 or ord(c) >= 127 for c in s)


def escape(s: str) -> str:
    """OCaml `String.escaped` of `s`, except that printable non-ASCII text stays readable."""
    out = []
    for c in s:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif 32 <= ord(c) < 127 or (ord(c) > 127 and c.isprintable()):
            out.append(c)
        else:
            out.extend(f"\\{b:03d}" for b in c.encode("utf-8", "surrogatepass"))
    return "".join(out)


def ocaml_string(s: str) -> str:
    """`s` as an OCaml string literal (`%S`), for messages that quote the user's text: the
    one quoting function of the project (printable non-ASCII text stays readable)."""
    return f'"{escape(s)}"'


def format_atom(s: str) -> str:
    """`s` as a one-line sexplib atom: bare when it reads back as itself, else `"..."` escaped."""
    return ocaml_string(s) if needs_quotes(s) else s


class _Located:
    """A form that knows where it starts; the line and column are worked out when asked for
    (most forms of a big spec are never asked), from the offset the reader recorded."""

    __slots__ = ("_off", "_pos", "_src")
    _pos: Pos | None
    _src: _Reader | _Run | None
    _off: int  # an offset in the text (_Reader), or the atom's index in its run (_Run)

    @property
    def pos(self) -> Pos | None:
        """Where the form starts in its file (None for forms made by code)."""
        if self._pos is None and self._src is not None:
            self._pos = self._src.pos(self._off)
            self._src = None
        return self._pos


class Atom(_Located):
    """An atom; `quoted` tells whether it was written as a `"..."` string. Read-only; atoms
    are equal when their values are (position and quoting aside)."""

    __slots__ = ("quoted", "value")

    def __init__(
        self,
        value: str,
        pos: Pos | None = None,
        quoted: bool = False,
        _src: _Reader | _Run | None = None,
        _off: int = 0,
    ) -> None:
        self.value = value
        self.quoted = quoted
        self._pos, self._src, self._off = pos, _src, _off

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Atom) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"Atom({self.value!r})"


class SList(_Located):
    """A parenthesised list of forms. Read-only; equal when their items are.

    A list the reader made may hold long runs of plain atoms as plain strings (`_Words`):
    `items` makes their Atoms when first asked, and `values()` gives the strings without
    making any, which is what keeps a list of a million atoms cheap to read and parse.
    """

    __slots__ = ("_items", "_parts")

    def __init__(
        self,
        items: tuple[Sexp, ...],
        pos: Pos | None = None,
        _src: _Reader | _Run | None = None,
        _off: int = 0,
        _parts: list[Sexp | _Words] | None = None,
    ) -> None:
        self._items: tuple[Sexp, ...] | None = items if _parts is None else None
        self._parts = _parts
        self._pos, self._src, self._off = pos, _src, _off

    @property
    def items(self) -> tuple[Sexp, ...]:
        """The forms in the list."""
        if self._items is None:
            out: list[Sexp] = []
            for part in self._parts or ():
                if isinstance(part, _Words):
                    out.extend(part.atoms())
                else:
                    out.append(part)
            self._items, self._parts = tuple(out), None
        return self._items

    def head(self) -> str | None:
        """The value of the first item if it is an atom (`run` for `(run ...)`), else None."""
        if self._parts is not None:
            first = self._parts[0] if self._parts else None
            if isinstance(first, _Words):
                return first.words[0]
        else:
            first = self._items[0] if self._items else None
        return first.value if isinstance(first, Atom) else None

    def values(self, start: int = 0) -> list[str] | None:
        """The values of `items[start:]` if they are all atoms, else None."""
        if self._parts is None:
            tail = self.items[start:]
            if all(isinstance(x, Atom) for x in tail):
                return [x.value for x in tail]  # type: ignore[union-attr]
            return None
        out: list[str] = []
        skip = start
        for part in self._parts:
            if isinstance(part, _Words):
                words = part.words[skip:] if skip else part.words
                skip = max(0, skip - len(part.words))
                out.extend(words)
            elif skip:
                skip -= 1
            elif isinstance(part, Atom):
                out.append(part.value)
            else:
                return None
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SList) and other.items == self.items

    def __hash__(self) -> int:
        return hash(self.items)

    def __repr__(self) -> str:
        return f"SList({self.items!r})"


class _Words:
    """A run of plain atoms read as strings; Atoms are made only when asked for."""

    __slots__ = ("run", "words")

    def __init__(self, run: _Run, words: list[str]) -> None:
        self.run, self.words = run, words

    def atoms(self) -> list[Atom]:
        run = self.run
        return [Atom(w, None, False, run, k) for k, w in enumerate(self.words)]


Sexp = Atom | SList


def head(form: Sexp) -> str | None:
    """The leading atom of a list form (`run` for `(run ...)`), else None."""
    return form.head() if isinstance(form, SList) else None


def decode_source(data: str | bytes, filename: str) -> str:
    """The text of a spec file; bytes that are not UTF-8 raise SpecError naming line:col."""
    if isinstance(data, str):
        text = data
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate: not text, and no file can hold it
            prefix = text[: e.start]
            line_start = prefix.rfind("\n") + 1
            pos = Pos(filename, prefix.count("\n") + 1, e.start - line_start + 1)
            raise SpecError(
                f"invalid character U+{ord(text[e.start]):04X} (a lone surrogate)",
                pos,
                "spec text must be Unicode text that UTF-8 can encode",
            ) from None
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            before = data[: e.start]
            line_start = before.rfind(b"\n") + 1
            col = len(before[line_start:].decode("utf-8")) + 1
            pos = Pos(filename, before.count(b"\n") + 1, col)
            raise SpecError(
                f"invalid UTF-8 byte 0x{data[e.start]:02x}", pos, "spec files must be UTF-8 text"
            ) from None
    # An editor's byte order mark is not part of the spec.
    return text.removeprefix("\ufeff")


@contextlib.contextmanager
def many_objects() -> Iterator[None]:
    """Reading or parsing a big spec makes a million small objects that form no cycles; the
    cyclic collector would scan them over and over while they are made (half the time)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def read_sexp(data: str | bytes, filename: str = "<spec>") -> Sexp:
    """Read exactly one S-expression from `data`; anything else raises SpecError."""
    text = decode_source(data, filename)
    with many_objects():
        forms = _Reader(text, filename).read_all()
    if not forms:
        raise SpecError(
            "the spec file is empty", Pos(filename, 1, 1), "a spec looks like ((from IMAGE) OP...)"
        )
    if len(forms) > 1:
        raise SpecError(
            "text after the end of the spec",
            forms[1].pos,
            "a spec file holds exactly one (...) form; check for an extra ')' above",
        )
    return forms[0]


@dataclass
class _Frame:
    """A list being read: where it opened, its items so far (runs of atoms left as `_Words`
    when `lazy`), pending `#;` comments."""

    start: int
    items: list[Sexp | _Words] = field(default_factory=list)
    skips: list[int] = field(default_factory=list)
    lazy: bool = False


class _Reader:
    """One pass over the text with an explicit stack of open lists."""

    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.filename = filename
        self.i = 0
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def pos(self, offset: int) -> Pos:
        line = bisect.bisect_right(self.line_starts, offset)
        return Pos(self.filename, line, offset - self.line_starts[line - 1] + 1)

    def error(self, offset: int, message: str, hint: str | None = None) -> SpecError:
        return SpecError(message, self.pos(offset), hint)

    def read_all(self) -> list[Sexp]:
        """Every top-level form. A run of plain atoms between two other tokens (parentheses,
        strings, comments) is one regex match split in one call, which is what makes a spec
        of a million atoms quick to read; the rare tokens go through the methods below."""
        frames = [_Frame(-1)]
        top = frames[0]
        text = self.text
        i = 0
        while True:
            for m in _TOKEN.finditer(text, i):
                kind = m.lastindex
                if kind == _ATOMS:
                    start = m.start(_ATOMS)
                    stop = self._plain_atoms(top, start, m[_ATOMS], text[m.end() : m.end() + 1])
                    if stop is None:
                        continue
                    self.i = stop  # a comment starts inside the run: go on from there
                    break
                if kind == _PLAIN:  # a string without escapes: the usual case
                    start = m.start(_PLAIN)
                    form: Sexp = Atom(text[start + 1 : m.end() - 1], None, True, self, start)
                elif kind == _OPEN:
                    start = m.start(_OPEN)
                    if len(frames) > MAX_DEPTH:
                        raise self.error(start, f"lists are nested more than {MAX_DEPTH} deep")
                    top = _Frame(start)
                    frames.append(top)
                    continue
                elif kind == _CLOSE:
                    if len(frames) == 1:
                        raise self.error(m.start(_CLOSE), "unexpected ')' with no matching '('")
                    done = frames.pop()
                    if done.skips:
                        raise self.error(done.skips[-1], "'#;' comments out nothing before ')'")
                    top = frames[-1]
                    if done.lazy:
                        form = SList((), None, self, done.start, done.items)
                    else:
                        form = SList(tuple(done.items), None, self, done.start)  # type: ignore[arg-type]
                else:  # comments, escaped strings, `#;`: the careful paths below, then on
                    self.i = m.start(_OTHER)
                    break
                if top.skips:
                    top.skips.pop()  # `#;` swallows the next complete form at its own level
                else:
                    top.items.append(form)
            else:
                break  # the end of the text
            if text[self.i] == '"':
                self.emit(top, self.read_string())
            elif text.startswith("#;", self.i):
                top.skips.append(self.i)
                self.i += 2
            else:
                self.skip_blanks_and_comments()
            i = self.i
        if len(frames) > 1:
            raise self.unclosed_error(frames[-1].start)
        if frames[0].skips:
            raise self.error(frames[0].skips[-1], "'#;' comments out nothing before the end")
        return frames[0].items  # type: ignore[return-value]  # the top level is never lazy

    def unclosed_error(self, innermost: int) -> SpecError:
        """The error for lists left open at the end: at the `(` that indentation says was
        left open (`guess_unclosed`), which a missing `)` deep in a spec makes the outermost
        one only when read literally."""
        guess = guess_unclosed(self.text)
        if guess is None or guess.dedent_line is None:
            return self.error(innermost, "this '(' is never closed", "add the missing ')'")
        return self.error(
            guess.offset,
            f"this '(' is probably never closed: line {guess.dedent_line} is indented "
            "as if the form had ended",
            "add the missing ')'",
        )

    def _plain_atoms(self, frame: _Frame, start: int, chunk: str, after: str) -> int | None:
        """Add the plain atoms of `chunk` (text at offset `start` without parentheses, quotes
        or `;`; `after` is the character that follows it). If a `#|` or `#;` comment starts
        inside it, add the atoms before it and return the comment's offset; else None."""
        stop = None
        if "#" in chunk and (m := _COMMENT_START.search(chunk + after)) is not None:
            stop, chunk = start + m.start(), chunk[: m.start()]
        words = _words(chunk)
        if not words:
            return stop
        if "#|" in chunk or "|#" in chunk:
            self.i = start + min(at for at in (chunk.find("#|"), chunk.find("|#")) if at >= 0)
            while self.i > start and chunk[self.i - start - 1] not in WHITESPACE:
                self.i -= 1  # back to the start of that atom
            self.read_atom()  # raises, naming the position
        if len(words) == 1:
            atoms = [Atom(words[0], None, False, self, start)]
        elif len(words) > _LAZY_WORDS and frame.start >= 0 and not frame.skips:
            frame.items.append(_Words(_Run(self, start, chunk), words))
            frame.lazy = True
            return stop
        else:
            run = _Run(self, start, chunk)
            atoms = [Atom(w, None, False, run, k) for k, w in enumerate(words)]
        if frame.skips:
            for atom in atoms:
                self.emit(frame, atom)
        else:
            frame.items.extend(atoms)
        return stop

    def _atom(self, value: str, offset: int, quoted: bool) -> Atom:
        return Atom(value, None, quoted, self, offset)

    @staticmethod
    def emit(frame: _Frame, form: Sexp) -> None:
        if frame.skips:
            frame.skips.pop()  # `#;` swallows the next complete form at its own level
        else:
            frame.items.append(form)

    def skip_blanks_and_comments(self) -> None:
        text = self.text
        while self.i < len(text):
            c = text[self.i]
            if c in WHITESPACE:
                self.i += 1
            elif c == ";":
                end = text.find("\n", self.i)
                self.i = len(text) if end < 0 else end + 1
            elif text.startswith("#|", self.i):
                self.skip_block_comment()
            else:
                return

    def skip_block_comment(self) -> None:
        start = self.i
        depth = 0
        text = self.text
        while self.i < len(text):
            if text.startswith("#|", self.i):
                depth += 1
                self.i += 2
            elif text.startswith("|#", self.i):
                depth -= 1
                self.i += 2
                if depth == 0:
                    return
            elif text[self.i] == '"':
                # As in sexplib, strings inside comments are lexed, so "|#" in one is harmless.
                self.read_string()
            else:
                self.i += 1
        raise self.error(start, "this '#|' comment is never closed", "end it with '|#'")

    def read_atom(self) -> Atom:
        start = self.i
        m = _ATOM_END.search(self.text, start)
        end = m.start() if m else len(self.text)
        value = self.text[start:end]
        for bad in ("#|", "|#"):
            at = value.find(bad)
            if at >= 0:
                hint = f"quote the atom: {clip(format_atom(value))}"
                raise self.error(start + at, f"'{bad}' inside an atom", hint)
        self.i = end
        return self._atom(value, start, False)

    def read_string(self) -> Atom:
        start = self.i
        text = self.text
        out = bytearray()
        i = start + 1
        while True:
            m = _STRING_SPECIAL.search(text, i)
            if m is None:
                raise self.error(start, "this string is never closed", "end it with '\"'")
            out += text[i : m.start()].encode("utf-8", "surrogatepass")
            i = m.start()
            if text[i] == '"':
                break
            i = self._escape(i, out)
        self.i = i + 1
        try:
            value = out.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(
                start,
                "this string's escapes do not form UTF-8 text",
                "\\ddd and \\xhh escapes must spell UTF-8 bytes",
            ) from None
        return self._atom(value, start, True)

    def _escape(self, i: int, out: bytearray) -> int:
        """Decode the escape at text[i] == '\\' into `out`; return the offset after it."""
        text = self.text
        nxt = text[i + 1 : i + 2]
        if nxt in ("\n", "\r"):
            j = i + 1
            if text.startswith("\r\n", j):
                j += 2
            elif nxt == "\n":
                j += 1
            else:
                out += b"\\\r"  # a lone CR is not a line break: keep it literally
                return j + 1
            while j < len(text) and text[j] in " \t":
                j += 1
            return j
        if nxt in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[nxt].encode()
            return i + 2
        digits = text[i + 1 : i + 4]
        if len(digits) == 3 and all(d in "0123456789" for d in digits):
            value = int(digits)
            if value > 255:
                raise self.error(i, f"escape \\{digits} is out of range", "\\ddd must be 000-255")
            out.append(value)
            return i + 4
        hexa = text[i + 2 : i + 4]
        if nxt == "x" and len(hexa) == 2 and all(h in _HEX for h in hexa):
            out.append(int(hexa, 16))
            return i + 4
        if nxt == "":
            raise self.error(i, "the file ends inside a string", "end it with '\"'")
        # Unknown escapes stay as written, like sexplib.
        out += ("\\" + nxt).encode("utf-8", "surrogatepass")
        return i + 2

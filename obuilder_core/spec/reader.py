"""S-expression reader for spec files: sexplib syntax, every form tagged with its position.

Accepted syntax (as sexplib's): atoms, `( ... )` lists, `"..."` strings with OCaml escapes
(`\\n \\t \\b \\r \\\\ \\" \\' \\<space> \\ddd \\xhh`, backslash-newline continuation; other
escapes are kept literally), `;` line comments, nesting `#| ... |#` block comments and `#;`
datum comments. The reader never recurses, so no input can exhaust the Python stack; lists
nested more than MAX_DEPTH deep are refused instead.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from obuilder_core.spec.errors import SpecError
from obuilder_core.spec.model import Pos

# A real spec nests about 8 deep per stage; this leaves room for dozens of nested stages.
MAX_DEPTH = 100

WHITESPACE = " \t\n\r\f"
_ATOM_END = re.compile(r"[ \t\n\r\f()\";]")
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


def format_atom(s: str) -> str:
    """`s` as a one-line sexplib atom: bare when it reads back as itself, else `"..."` escaped."""
    return f'"{escape(s)}"' if needs_quotes(s) else s


@dataclass(frozen=True)
class Atom:
    """An atom; `quoted` tells whether it was written as a `"..."` string."""

    value: str
    pos: Pos | None = field(default=None, compare=False)
    quoted: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class SList:
    """A parenthesised list of forms."""

    items: tuple[Sexp, ...]
    pos: Pos | None = field(default=None, compare=False)


Sexp = Atom | SList


def head(form: Sexp) -> str | None:
    """The leading atom of a list form (`run` for `(run ...)`), else None."""
    if isinstance(form, SList) and form.items and isinstance(form.items[0], Atom):
        return form.items[0].value
    return None


def decode_source(data: str | bytes, filename: str) -> str:
    """The text of a spec file; bytes that are not UTF-8 raise SpecError naming line:col."""
    if isinstance(data, str):
        text = data
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            prefix = data[: e.start]
            line_start = prefix.rfind(b"\n") + 1
            col = len(prefix[line_start:].decode("utf-8")) + 1
            pos = Pos(filename, prefix.count(b"\n") + 1, col)
            raise SpecError(
                f"invalid UTF-8 byte 0x{data[e.start]:02x}", pos, "spec files must be UTF-8 text"
            ) from None
    # An editor's byte order mark is not part of the spec.
    return text.removeprefix("\ufeff")


def read_sexp(data: str | bytes, filename: str = "<spec>") -> Sexp:
    """Read exactly one S-expression from `data`; anything else raises SpecError."""
    text = decode_source(data, filename)
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
    """A list being read: where it opened, its items so far, pending `#;` comments."""

    start: int
    items: list[Sexp] = field(default_factory=list)
    skips: list[int] = field(default_factory=list)


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
        frames = [_Frame(-1)]
        text = self.text
        while True:
            self.skip_blanks_and_comments()
            if self.i >= len(text):
                break
            c = text[self.i]
            if c == "(":
                if len(frames) > MAX_DEPTH:
                    raise self.error(self.i, f"lists are nested more than {MAX_DEPTH} deep")
                frames.append(_Frame(self.i))
                self.i += 1
            elif c == ")":
                if len(frames) == 1:
                    raise self.error(self.i, "unexpected ')' with no matching '('")
                frame = frames.pop()
                if frame.skips:
                    raise self.error(frame.skips[-1], "'#;' comments out nothing before ')'")
                self.emit(frames[-1], SList(tuple(frame.items), self.pos(frame.start)))
                self.i += 1
            elif text.startswith("#;", self.i):
                frames[-1].skips.append(self.i)
                self.i += 2
            elif c == '"':
                self.emit(frames[-1], self.read_string())
            else:
                self.emit(frames[-1], self.read_atom())
        if len(frames) > 1:
            raise self.error(frames[-1].start, "this '(' is never closed", "add the missing ')'")
        if frames[0].skips:
            raise self.error(frames[0].skips[-1], "'#;' comments out nothing before the end")
        return frames[0].items

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
                raise self.error(
                    start + at, f"'{bad}' inside an atom", f"quote the atom: {format_atom(value)}"
                )
        self.i = end
        return Atom(value, self.pos(start))

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
        return Atom(value, self.pos(start), quoted=True)

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

"""The one sanitizer for model-controlled text, on terminals and in every report format.

One character class, :data:`UNSAFE`, says what may never reach a reader raw: every
control character (Unicode Cc: C0, DEL, C1 — ESC starts every ANSI/OSC sequence, CR
rewrites lines), every format character (Cf: bidirectional overrides, marks and isolates,
zero-width characters, the soft hyphen, Arabic and Egyptian format controls, tag
characters …), line and paragraph separators (Zl, Zp), lone surrogates (Cs) and the
characters that render as nothing although Unicode files them elsewhere (Hangul fillers,
variation selectors, the combining grapheme joiner, Mongolian variation selectors, Khmer
inherent vowels). A test checks the class against the whole of ``unicodedata``.

- :func:`printable` shows each such character as ``\\xNN`` / ``\\uNNNN`` / ``\\UNNNNNNNN``
  and truncates long names: the text, GitHub, JUnit, HTML (a Jinja ``finalize``) and
  Markdown reporters and every ``bnlint: error:`` line use it.
- :class:`TerminalGuard` wraps ``sys.stdout``/``sys.stderr`` of the command-line tools, so
  that whatever a code path forgot to escape still reaches the terminal escaped; only the
  colour sequences bnlint itself writes (SGR bold, dim, colours, reset) pass.
- JSON, SARIF and GitLab output is ASCII (``json.dumps``), so these characters appear as
  ``\\uNNNN`` escapes there without help.
"""

from __future__ import annotations

import io
import re
import sys
from typing import IO, Any

_KEPT_ON_TERMINALS = "\x00-\x08\x0b-\x1f"  # C0 but tab and newline
_CLASS_REST = (
    "\x7f-\x9f"  # Cc: DEL, C1
    "\xad"  # soft hyphen
    "\u034f"  # combining grapheme joiner
    "\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"  # Arabic/Syriac format controls
    "\u115f\u1160\u17b4\u17b5\u180b-\u180f"  # Hangul fillers, Khmer vowels, Mongolian FVS
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f"  # zero width, bidi, Zl, Zp
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb"  # fillers, variation selectors, BOM
    "\ud800-\udfff"  # lone surrogates cannot be encoded, so cannot be printed
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e007f\U000e0100-\U000e01ef"  # tags, variation selectors supplement
)
UNSAFE = re.compile(f"[\x00-\x1f{_CLASS_REST}]")
MAX_NAME = 160


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: object, limit: int | None = MAX_NAME) -> str:
    """``text`` with every :data:`UNSAFE` character escaped; long names truncated."""
    value = UNSAFE.sub(_escape, str(text))
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


# What may pass a terminal raw: newline, tab, and the SGR sequences bnlint writes itself
# (reset, bold, dim, normal intensity, colours 31-37/39/90-97 — never conceal, blink or the
# black that hides text on a dark terminal).
_SGR = r"\x1b\[(?:0|1|2|22|3[1-79]|9[1-7])?(?:;(?:0|1|2|22|3[1-79]|9[1-7]))*m"
_TERMINAL = re.compile(f"({_SGR})|[{_KEPT_ON_TERMINALS}{_CLASS_REST}]")


def _terminal_escape(match: re.Match[str]) -> str:
    return match.group(1) or _escape(match)


def terminal_text(text: str) -> str:
    """``text`` as it may reach a terminal: newlines, tabs and bnlint's own colours kept."""
    return _TERMINAL.sub(_terminal_escape, text)


class TerminalGuard(io.TextIOBase):
    """A text stream that passes everything through :func:`terminal_text`.

    It has no ``buffer``: a writer that looks for the binary stream underneath (click does,
    on a misconfigured locale) falls back to this text stream instead of bypassing it.
    """

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream

    def write(self, text: str) -> int:  # type: ignore[override]
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.stream.write(terminal_text(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.stream, "errors", "strict")


def guard_terminal(module: Any = sys) -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` in a :class:`TerminalGuard` (once)."""
    for name in ("stdout", "stderr"):
        stream = getattr(module, name)
        if stream is not None and not isinstance(stream, TerminalGuard):
            setattr(module, name, TerminalGuard(stream))


def unguarded(stream: IO[str]) -> IO[str]:
    """The stream under a :class:`TerminalGuard`, for a writer whose own escape codes are
    its whole point and whose text is already :func:`printable` (the progress line)."""
    return stream.stream if isinstance(stream, TerminalGuard) else stream

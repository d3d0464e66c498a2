"""Name patterns matched in time linear in the name: ``per-node-ignores`` and ``ignore``.

Python's ``re`` backtracks: ``(a+)+$`` against forty ``a`` and a ``!`` runs for longer than
anyone waits, and ``re`` has no timeout. These patterns come from configuration files that
may be discovered next to the models (data, see docs/security.md) or recorded in a report,
and they are matched against node names the model chooses, so both sides can be hostile.

A pattern is parsed by Python's own regex parser (same syntax, same error messages) and
compiled into a Thompson NFA run as a lazily built DFA, as RE2 does: a character of a name
costs one cached transition, or, the first time a (state, character) pair is met, one step
over the active NFA states. What one character or one assertion means is left to ``re``
itself: each character class, literal, ``.``, ``^``, ``$``, ``\\b`` … is compiled alone by
``re`` with the flags in force at that point, and asked about one character (or one
position of a short context), which no pattern can make backtrack. So case folding
(``(?i)ſ`` matches ``s``), ``(?a)``, ``(?s)``, ``(?m)`` and Unicode classes mean exactly
what they mean to ``re.search``. Backreferences, lookaround, conditional and atomic groups
and possessive repetition have no automaton and are refused, naming the pattern.

Bounds, all checked before anything is built or cached: at most :data:`MAX_PATTERNS`
patterns of :data:`MAX_PATTERN_CHARS` characters, :data:`MAX_STATES` automaton states for
the whole set once repetitions are expanded (``a{1000}`` is 1,000 states), character ranges
covering at most :data:`MAX_CLASS_SPAN` code points (``re``'s compiler walks each one: a
1 KB class of 330 ranges took 2.4 s to compile, twice per pattern); the DFA cache is
dropped when it holds :data:`MAX_DFA_STATES` states, :data:`MAX_CACHED` NFA state entries
or :data:`MAX_MOVES` transitions; NFA steps spent on cache misses are charged against
:data:`MAX_WORK` per model: a set built to keep the DFA missing (``(a|b)*a(a|b){20}``
against names made for it) ends the lint of that model with one line instead of minutes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

try:  # the parser and compiler of the re module: Python 3.11+ names them re._parser ...
    from re import _compiler as _sre_compile
    from re import _constants as _sre_constants
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_compile as _sre_compile  # type: ignore[no-redef]
    import sre_constants as _sre_constants  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

from bnlint.rule import RuleInputError

MAX_PATTERN_CHARS = 1000
MAX_PATTERNS = 1000
MAX_STATES = 10_000
MAX_CLASS_SPAN = 2_500_000  # code points re's compiler walks: ~0.1 us each (two full (?i) ranges)
MAX_DFA_STATES = 4096
MAX_CACHED = 500_000
MAX_MOVES = 200_000
MAX_WORK = 5_000_000

_CHAR, _SPLIT, _ASSERT, _MATCH = range(4)
# What follows a position (all that ^ $ \A \Z \b \B look at besides the character before
# it): the end, a final newline, another newline, an ASCII word character, a word
# character only in Unicode, anything else; and a text that begins that way.
_END, _FINAL_NL, _NL, _WORD_ASCII, _WORD_UNICODE, _OTHER = range(6)
_CONTEXT = ("", "\n", "\nx", "a", "é", "-")
_REFUSED = {
    "GROUPREF": "backreferences",
    "GROUPREF_EXISTS": "conditional groups",
    "ASSERT": "lookahead and lookbehind",
    "ASSERT_NOT": "lookahead and lookbehind",
    "ATOMIC_GROUP": "atomic groups",
    "POSSESSIVE_REPEAT": "possessive repetition",
}
_ONE_CHARACTER = frozenset({"LITERAL", "NOT_LITERAL", "ANY", "IN"})


class PatternError(ValueError):
    """A pattern that is not a regular expression, or has no linear-time automaton."""


class PatternBudgetExceeded(RuleInputError):
    """Matching a pattern set against the model's names needed more than MAX_WORK steps."""


def _name(op: object) -> str:
    return getattr(op, "name", str(op))


def _next_class(text: str, index: int, words: bool) -> int:
    """What follows position ``index`` (word classes only when ``words``: \\b, \\B)."""
    if index >= len(text):
        return _END
    char = text[index]
    if char == "\n":
        return _FINAL_NL if index == len(text) - 1 else _NL
    if words and (char == "_" or char.isalnum()):  # re's Unicode word: isalnum or _
        return _WORD_ASCII if char.isascii() else _WORD_UNICODE
    return _OTHER


def _size(items: Sequence) -> int:
    """States :class:`_Builder` makes for ``items`` (an upper bound, computed without
    building them; stops counting once over MAX_STATES)."""
    total = 0
    for op, value in items:
        op = _name(op)
        if op in _REFUSED:
            raise PatternError(f"{_REFUSED[op]} cannot be matched in linear time")
        if op == "SUBPATTERN":
            total += _size(value[3])
        elif op == "BRANCH":
            total += sum(_size(alternative) for alternative in value[1]) + len(value[1])
        elif op in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, inner = value
            copies = low + 1 if high == _sre_constants.MAXREPEAT else high
            total += (_size(inner) + 1) * copies
        else:
            total += 1
        if total > MAX_STATES:
            break
    return total


class _Builder:
    """A Thompson NFA in parallel lists, built right to left (each piece knows its next)."""

    def __init__(self) -> None:
        self.kind: list[int] = []
        self.test: list[object] = []  # CHAR/ASSERT: re's own matcher; MATCH: pattern index
        self.out: list[int] = []
        self.alt: list[int] = []  # SPLIT: the second way
        self.owner: list[int] = []  # the pattern a state belongs to
        self.pattern = 0
        self.words = False  # some pattern has \b or \B
        self._compiled: dict[tuple, Callable] = {}

    def add(self, kind: int, test: object = None, out: int = -1, alt: int = -1) -> int:
        self.kind.append(kind)
        self.test.append(test)
        self.out.append(out)
        self.alt.append(alt)
        self.owner.append(self.pattern)
        return len(self.kind) - 1

    def by_re(self, op: object, value: object, flags: int) -> Callable:
        """``re``'s matcher of this one item (one character or one assertion) alone."""
        key = (_name(op), repr(value), flags)
        if key not in self._compiled:
            state = _sre_parse.State()
            state.flags = flags
            item = _sre_parse.SubPattern(state, [(op, value)])
            self._compiled[key] = _sre_compile.compile(item).match
        return self._compiled[key]

    def sequence(self, items: Sequence, flags: int, after: int) -> int:
        for op, value in reversed(list(items)):
            after = self.item(op, value, flags, after)
        return after

    def item(self, op: object, value, flags: int, after: int) -> int:
        name = _name(op)
        if name in _ONE_CHARACTER:
            return self.add(_CHAR, self.by_re(op, value, flags), after)
        if name == "AT":
            self.words = self.words or "BOUNDARY" in _name(value)
            return self.add(_ASSERT, self.by_re(op, value, flags), after)
        if name == "SUBPATTERN":
            _, add_flags, del_flags, inner = value
            scoped = _sre_compile._combine_flags(flags, add_flags, del_flags)
            return self.sequence(inner, scoped, after)
        if name == "BRANCH":
            starts = [self.sequence(alternative, flags, after) for alternative in value[1]]
            start = starts[-1]
            for other in reversed(starts[:-1]):
                start = self.add(_SPLIT, None, other, start)
            return start
        if name in ("MAX_REPEAT", "MIN_REPEAT"):  # lazy or greedy: the same for a search
            low, high, inner = value
            if high == _sre_constants.MAXREPEAT:
                loop = self.add(_SPLIT, None, -1, after)
                self.out[loop] = self.sequence(inner, flags, loop)
                after = loop
            else:
                for _ in range(high - low):
                    after = self.add(_SPLIT, None, self.sequence(inner, flags, after), after)
            for _ in range(low):
                after = self.sequence(inner, flags, after)
            return after
        raise PatternError(f"{_REFUSED.get(name, name)} cannot be matched in linear time")


def _span(items: Sequence, flags: int) -> int:
    """Code points the ranges of the character classes cover: what ``re``'s compiler walks
    one by one (the Basic Multilingual Plane part; all of it under IGNORECASE). A class
    compiles once however often it repeats."""
    total = 0
    for op, value in items:
        op = _name(op)
        if op == "IN":
            for kind, item in value:
                if _name(kind) == "RANGE":
                    high = item[1] if flags & re.IGNORECASE else min(item[1], 0xFFFF)
                    total += max(0, high - item[0] + 1)
        elif op == "SUBPATTERN":
            total += _span(value[3], _sre_compile._combine_flags(flags, value[1], value[2]))
        elif op == "BRANCH":
            total += sum(_span(alternative, flags) for alternative in value[1])
        elif op in ("MAX_REPEAT", "MIN_REPEAT"):
            total += _span(value[2], flags)
    return total


def _quoted(pattern: str) -> str:
    return repr(pattern) if len(pattern) <= 80 else f"{pattern[:60]!r}… ({len(pattern)} characters)"


def _parse(pattern: str) -> tuple[list, int, int, int]:
    """The parsed items, global flags, automaton size and class span of one pattern."""
    if not isinstance(pattern, str):
        raise PatternError("a pattern must be a string")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"pattern longer than {MAX_PATTERN_CHARS} characters")
    try:
        parsed = _sre_parse.parse(pattern, 0)
        size = _size(list(parsed))
        span = _span(list(parsed), parsed.state.flags)
        if span > MAX_CLASS_SPAN:  # before re's compiler walks them
            raise PatternError(f"character ranges cover over {MAX_CLASS_SPAN} code points")
        re.compile(pattern)
    except re.error as error:
        raise PatternError(f"bad regex {_quoted(pattern)}: {error}") from None
    except RecursionError:
        raise PatternError(f"regex {_quoted(pattern)} is nested too deeply") from None
    except PatternError as error:
        raise PatternError(f"regex {_quoted(pattern)}: {error}") from None
    if size > MAX_STATES:
        raise PatternError(
            f"regex {_quoted(pattern)} expands to over {MAX_STATES} automaton states "
            "(repetition counts)"
        )
    return list(parsed), parsed.state.flags, size, span


class NamePatterns:
    """A set of patterns; :meth:`matching` says which of them ``re.search`` would find."""

    def __init__(self, patterns: Sequence[str], where: str = "patterns") -> None:
        if len(patterns) > MAX_PATTERNS:
            raise PatternError(f"more than {MAX_PATTERNS} patterns")
        parsed = [_parse(pattern) for pattern in patterns]
        if sum(size for _, _, size, _ in parsed) > MAX_STATES:
            raise PatternError(
                f"the patterns expand to over {MAX_STATES} automaton states together"
            )
        if sum(span for *_, span in parsed) > MAX_CLASS_SPAN:
            raise PatternError(
                f"the patterns' character ranges cover over {MAX_CLASS_SPAN} code points together"
            )
        builder = _Builder()
        self.starts: list[int] = []
        try:
            for index, (items, flags, _, _) in enumerate(parsed):
                builder.pattern = index
                accept = builder.add(_MATCH, index)
                self.starts.append(builder.sequence(items, flags, accept))
        except RecursionError:
            raise PatternError("a pattern is nested too deeply") from None
        self.kind, self.test, self.out = builder.kind, builder.test, builder.out
        self.alt, self.owner, self.words = builder.alt, builder.owner, builder.words
        self.asserts = _ASSERT in self.kind
        self.where = where
        self.count = len(patterns)
        self.work = 0
        self._generation = 0
        self._clear()

    def _clear(self) -> None:
        self._ids: dict[tuple[frozenset[int], frozenset[int]], int] = {}
        self._states: list[tuple[tuple[int, ...], frozenset[int]]] = []
        self._moves: dict[tuple[int, str, int], int] = {}
        self._first: dict[int, int] = {}
        self._cached = 0
        self._generation += 1

    def _charge(self, steps: int) -> None:
        self.work += steps
        if self.work > MAX_WORK:
            raise PatternBudgetExceeded(
                f"{self.where}: matching these patterns against the model's names needs more "
                f"than {MAX_WORK} automaton steps; simplify them"
            )

    def _closure(
        self, seeds: Iterable[int], previous: str, following: int, done: frozenset[int]
    ) -> int:
        """The DFA state after ``seeds``: their closure plus a new start of every pattern
        not yet found (a search tries every position); patterns found leave the state."""
        kind, out, alt, test = self.kind, self.out, self.alt, self.test
        stack = [*seeds, *(s for i, s in enumerate(self.starts) if i not in done)]
        seen: set[int] = set()
        chars, matched = [], set(done)
        context = previous + _CONTEXT[following]
        while stack:
            state = stack.pop()
            if state in seen:
                continue
            seen.add(state)
            what = kind[state]
            if what == _CHAR:
                chars.append(state)
            elif what == _SPLIT:
                stack += (out[state], alt[state])
            elif what == _ASSERT:
                if test[state](context, len(previous)):  # type: ignore[operator]
                    stack.append(out[state])
            else:
                matched.add(test[state])  # type: ignore[arg-type]
        self._charge(len(seen) + len(done))
        found = frozenset(matched)
        key = (frozenset(s for s in chars if self.owner[s] not in found), found)
        ident = self._ids.get(key)
        if ident is None:
            cost = len(key[0]) + len(found)
            if (
                len(self._states) >= MAX_DFA_STATES
                or self._cached + cost > MAX_CACHED
                or len(self._moves) >= MAX_MOVES
            ):
                self._clear()  # ids held by the caller are stale now: see matching()
            ident = self._ids[key] = len(self._states)
            self._states.append((tuple(key[0]), found))
            self._cached += cost
        return ident  # type: ignore[return-value]

    def matching(self, text: str) -> frozenset[int]:
        """Indices of the patterns that occur somewhere in ``text`` (as ``re.search``)."""
        if not self.count:
            return frozenset()
        words = self.words
        following = _next_class(text, 0, words) if self.asserts else _OTHER
        current = self._first.get(following)
        if current is None:
            current = self._first[following] = self._closure((), "", following, frozenset())
        for index, char in enumerate(text):
            chars, done = self._states[current]
            if len(done) == self.count:
                break
            if self.asserts:
                following = _next_class(text, index + 1, words)
            key = (current, char, following)
            move = self._moves.get(key)
            if move is None:
                generation = self._generation
                self._charge(len(chars))
                test, out = self.test, self.out
                moved = [out[s] for s in chars if test[s](char)]  # type: ignore[operator]
                move = self._closure(moved, char, following, done)
                if generation == self._generation:  # else the cache was dropped: key is stale
                    self._moves[key] = move
            current = move
        return self._states[current][1]

    def search(self, text: str) -> bool:
        return bool(self.matching(text))

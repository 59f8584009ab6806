"""How text read from files is shown to people: the characters a screen acts on or hides made visible."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

__all__ = ["display_text", "printable", "unique_labels"]


def printable(text: str) -> str:
    """``text`` safe to show on a terminal: every control, bidi, zero-width and line-break
    character becomes a visible escape (``\\x1b``, ``\\u202e``, ``\\n``).

    Names, errors, keys and audit text come from files other people wrote: raw, an ESC or C1
    sequence recolours the terminal, sets its title or writes the clipboard (OSC 52), a bidi
    override or a line break makes a failed node read "ALL GOOD". Every human-output path goes
    through here (``say``, ``note``, ``table``); JSON output stays exact. Backslashes are kept,
    so escaping twice changes nothing and table cells can be escaped again as whole lines.
    A lone surrogate (a byte of a Go string that is not UTF-8) shows as ``\\udcff``.
    """
    if text.isprintable():  # the common case, checked in C
        return text
    return "".join(char if _shown(char) else _escape(char) for char in text)


def display_text(text: str) -> str:
    """``text`` as the notebook shows it: ``printable``, but line breaks and tabs kept.

    Multi-line errors stay readable in a ``<pre>``; every other control, bidi override or
    isolate, zero-width character and lone surrogate becomes a visible escape, for the reason a
    terminal needs them (a failed node must not read "ALL GOOD"), and because a lone surrogate
    cannot be encoded at all: pandas' string columns, graphviz and the front end all need UTF-8.
    Used for shown text only; actions keep the real names. Escaping twice changes nothing.
    """
    if text.isprintable():
        return text
    return "".join(char if char in "\n\t" or _shown(char) else _escape(char) for char in text)


def unique_labels(names: Iterable[str]) -> list[str]:
    """``display_text`` of each name, made unique: a label already taken (two names that differ
    only in escaped characters, ``"a\\udcff"`` and ``"a\\\\udcff"``) gets `` (2)``, `` (3)``...

    Tables index their rows by these labels; pandas' styling needs them unique, and two nodes
    must never be shown as one.
    """
    labels: list[str] = []
    taken: set[str] = set()
    # The next number to try per label: a crafted file can make thousands of names look alike
    # (every escapable character doubles them), and counting up from 2 each time is quadratic.
    next_count: dict[str, int] = {}
    for name in names:
        label = display_text(name)
        if label in taken:
            count = next_count.get(label, 2)
            while f"{label} ({count})" in taken:
                count += 1
            next_count[label] = count + 1
            label = f"{label} ({count})"
        taken.add(label)
        labels.append(label)
    return labels


def _shown(char: str) -> bool:
    # isprintable() is False for Cc, Cf, Cs, Cn, Zl, Zp and the spaces other than " " (Zs); those
    # spaces and private-use glyphs (Co) are harmless, everything else a terminal acts on or hides.
    return char.isprintable() or unicodedata.category(char) in ("Zs", "Co")


_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    code = ord(char)
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"

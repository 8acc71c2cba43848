"""Keyboard shortcuts for class buttons.

1. A class whose name is a single letter or digit gets that key (digits 0-9 press their own key).
2. Otherwise classes get 1-9 by position, where that digit is not already some class's own key.
3. Plus the first letter of the name, where no other class starts with it.
`s` and `u` stay reserved for skip and undo; on the batch grid `x` and `a` too (untick, tick all).
"""

from __future__ import annotations

RESERVED = frozenset({"s", "u"})
BATCH_RESERVED_KEYS = RESERVED | {"x", "a"}


def class_hotkeys(classes: list[str], *, reserved: frozenset[str] = RESERVED) -> list[dict]:
    keys: list[list[str]] = [[] for _ in classes]
    taken: set[str] = set(reserved)
    for index, name in enumerate(classes):
        own = name.strip().lower()
        if len(own) == 1 and own.isalnum() and own not in taken:
            keys[index].append(own)
            taken.add(own)
    for index in range(min(len(classes), 9)):
        digit = str(index + 1)
        if not keys[index] and digit not in taken:
            keys[index].append(digit)
            taken.add(digit)
    firsts = [c.strip()[:1].lower() for c in classes]
    for index, letter in enumerate(firsts):
        if letter.isalpha() and letter not in taken and firsts.count(letter) == 1 and len(classes[index].strip()) > 1:
            keys[index].append(letter)
            taken.add(letter)
    return [{"label": name, "keys": k} for name, k in zip(classes, keys, strict=True)]

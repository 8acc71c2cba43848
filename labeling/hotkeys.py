"""Keyboard shortcuts for class buttons, and the labelling screen's commands.

0. A key an owner chose for a class (Project.class_keys) comes first, where this screen does not reserve it.
1. A class whose name is a single letter or digit gets that key (digits 0-9 press their own key).
2. Otherwise classes get 1-9 by position, where that digit is not already some class's own key.
3. Plus the first letter of the name, where no other class starts with it.
Classes choose first: on the labelling screen skip and undo then take the first of their keys no class
uses (`command_keys`: `s` for skip unless a class is called Spam, then `k`...), shown on their buttons.
On the batch grid `s`, `u`, `x` and `a` stay the grid's own (its commands are fixed).
"""

from __future__ import annotations

BATCH_RESERVED_KEYS = frozenset({"s", "u", "x", "a"})
# Each command's keys, best first; arrows and Backspace work as well, whatever the classes are called.
COMMAND_KEYS: dict[str, tuple[str, ...]] = {"skip": ("s", "k", "x", "q", "0"), "undo": ("u", "z", "b", "y")}


def command_keys(class_keys: list[dict], *, reserved: frozenset[str] = frozenset()) -> dict[str, str]:
    """Skip's and undo's letters: the first of each command's keys that no class uses ("" if none is free)."""
    taken = {k for c in class_keys for k in c["keys"]} | set(reserved)
    chosen: dict[str, str] = {}
    for command, preferred in COMMAND_KEYS.items():
        chosen[command] = next((k for k in preferred if k not in taken), "")
        taken.add(chosen[command])
    return chosen


def class_hotkeys(
    classes: list[str], *, reserved: frozenset[str] = frozenset(), chosen: dict[str, str] | None = None
) -> list[dict]:
    keys: list[list[str]] = [[] for _ in classes]
    taken: set[str] = set(reserved)
    owned: set[int] = set()  # classes with an owner's key get that key alone
    for index, name in enumerate(classes):
        key = str((chosen or {}).get(name, "")).lower()
        if key and key not in taken:
            keys[index].append(key)
            taken.add(key)
            owned.add(index)
    for index, name in enumerate(classes):
        if keys[index]:
            continue
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
        if (index not in owned and letter.isalpha() and letter not in taken and firsts.count(letter) == 1
                and len(classes[index].strip()) > 1):
            keys[index].append(letter)
            taken.add(letter)
    return [{"label": name, "keys": k} for name, k in zip(classes, keys, strict=True)]


"""Records for the integrity tests: values whose damage would not show by itself
(floats, text, nested containers) and a reference between records."""

from __future__ import annotations

from typing import Any

from typedstore import Persistable


class Sample(Persistable):
    def __init__(self, name: str, value: float, items: list[Any],
                 other: Sample | None = None) -> None:
        self.name = name
        self.value = value
        self.items = items
        self.other = other

    def content(self) -> tuple[Any, ...]:
        """What must come back unchanged (the referenced record's content too)."""
        other = self.other.content() if self.other is not None else None
        return (type(self).__name__, self.name, self.value, self.items, other)


def samples() -> list[Sample]:
    leaf = Sample("leaf", 2.718281828, [b"\x00\xff", {"k": (1, 2.5)}])
    return [leaf,
            Sample("pi", 3.141592653589793, ["text é", 10**20, None, {"nested": [1.5]}], leaf),
            Sample("big", 1e300, [str(i) * 3 for i in range(200)])]

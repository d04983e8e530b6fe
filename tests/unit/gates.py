"""A flush for the group-commit tests: it records each batch, and can be held mid-flush."""

from __future__ import annotations

import threading

WAIT_S = 10


class Gate:
    """`gate(items)` records the batch and answers ten times each item (-1 fails the batch).

    `hold()` makes the next call wait, once it has recorded its batch
    (`entered` is then set), until `opened` is set.
    """

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.opened.set()

    def hold(self) -> None:
        self.entered.clear()
        self.opened.clear()

    def enter(self, items: list[int]) -> None:
        """Record a batch, then wait while held."""
        self.batches.append(list(items))
        self.entered.set()
        assert self.opened.wait(WAIT_S)

    def __call__(self, items: list[int]) -> list[int]:
        self.enter(items)
        if -1 in items:
            raise ConnectionError("the flush failed")
        return [item * 10 for item in items]

"""A state machine over one table's status column: its transition table, checked first.

Each stateful thing (`engine.deliveries.states`, `engine.endpoints.states`) builds one
from its states, the states a row may be created in, and the table of allowed
transitions. Every status change is then a conditional UPDATE through it: each
(from, to) pair is checked against the table before the database is touched, and
the UPDATE moves only rows whose status is still one of `from_`, so a duplicate
message or a late answer can never move a row along a path the table does not draw.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import TransitionError


@dataclass(frozen=True)
class StateMachine:
    """The states of one status column, where rows start, and the moves between them."""

    name: str
    field: Any  # the model's status field, e.g. `Delivery.status`
    initial: tuple[str, ...]
    transitions: Mapping[str, Mapping[str, str]]  # from -> {to: who makes that move}

    @property
    def states(self) -> tuple[str, ...]:
        """Every state, in the table's order."""
        return tuple(self.transitions)

    def allows(self, from_: str, to: str) -> bool:
        """Whether the table has the move `from_` -> `to`."""
        return to in self.transitions.get(from_, {})

    def check(self, *, to: str, from_: Iterable[str]) -> tuple[str, ...]:
        """The states a move may start from, each pair checked against the table.

        Raises:
            TransitionError: a (from, to) pair is not in the table, or `from_` is empty.
        """
        sources = tuple(from_)
        if not sources:
            raise TransitionError(self.name, "(no state)", to)
        for source in sources:
            if not self.allows(source, to):
                raise TransitionError(self.name, source, to)
        return sources

    def check_initial(self, state: str) -> str:
        """A state new rows may be created in, checked against the table.

        Raises:
            TransitionError: rows are never created in `state`.
        """
        if state not in self.initial:
            raise TransitionError(self.name, None, state)
        return state

    def update(self, where: Any, *, to: str, from_: Iterable[str], **changes: Any) -> Any:
        """The conditional UPDATE moving the rows `where` selects, if still in `from_`.

        Answers the query unrun, for a caller that adds RETURNING; `move` runs it.

        Raises:
            TransitionError: a (from, to) pair is not in the table.
            TypeError: `changes` sets the status itself, around the table.
        """
        sources = self.check(to=to, from_=from_)
        if self.field.name in changes:
            raise TypeError(f"{self.name}: the status moves by `to`, never in `changes`")
        still = self.field == sources[0] if len(sources) == 1 else self.field.in_(sources)
        return self.field.model.update({self.field: to}, **changes).where(where & still)

    def move(self, where: Any, *, to: str, from_: Iterable[str], **changes: Any) -> int:
        """Move the rows `where` selects from `from_` to `to`; answer how many moved.

        Raises:
            TransitionError: a (from, to) pair is not in the table.
        """
        return int(self.update(where, to=to, from_=from_, **changes).execute())

"""PostgreSQL's connection pool, minus two round trips peewee would make.

`ShortcutPool` is peewee's `PooledPostgresqlDatabase` with two shortcuts, each
overriding peewee internals that `engine.shortcuts` lists with how to turn
them off:

- **Probe skip.** peewee probes every connection it hands out with `SELECT 1`.
  A connection checked in within `probe_idle_s`, idle and not closed is handed
  out unprobed. The cost: if the server goes away inside that second, the first
  statement on such a connection fails (a 503, retried by the client) instead
  of the pool quietly opening a new one; the broken connection is dropped on
  check-in.
- **Lazy BEGIN.** `begin()` only notes that BEGIN is owed; the transaction's
  first statement is sent as "BEGIN; <statement>" (one simple query, whose
  result is the statement's), a caller taking a cursor of its own (COPY) gets
  the BEGIN sent first, and a transaction that ran nothing commits without a
  word.

Why each is worth it: ops/bench/NOTES.md#pool-probe-skip and #lazy-begin.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

from playhouse.pool import PooledPostgresqlDatabase

# A connection checked back in less than this long ago skips the check-out probe.
PROBE_IDLE_S = 1.0


class ShortcutPool(PooledPostgresqlDatabase):
    """peewee's PostgreSQL pool with the probe skip and the lazy BEGIN.

    `probe_idle_s=0` probes every check-out, as peewee does; `lazy_begin=False`
    sends BEGIN on its own; `copies=False` tells `engine.db.connect.copy_rows`
    to INSERT instead of COPY.
    """

    def __init__(
        self,
        *args: Any,
        probe_idle_s: float = PROBE_IDLE_S,
        lazy_begin: bool = True,
        copies: bool = True,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        self.probe_idle_s = probe_idle_s
        self.lazy_begin = lazy_begin
        self.copies = copies
        self.clock = clock
        self._checked_in: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        super().__init__(*args, **kwargs)

    # The probe skip ------------------------------------------------------------------

    def _is_closed(self, conn: Any) -> bool:
        checked_in = self._checked_in.pop(conn, None)
        if (
            checked_in is not None
            and self.clock() - checked_in < self.probe_idle_s
            and not conn.closed
            and self._adapter.txn_status(conn) == self._adapter.txn_idle
        ):
            return False
        return bool(super()._is_closed(conn))

    def _close(self, conn: Any, close_conn: bool = False) -> None:
        with self._pool_lock:  # the lock `_is_closed` runs under, at check-out
            if not close_conn:
                self._checked_in[conn] = self.clock()
            super()._close(conn, close_conn)

    # The lazy BEGIN ------------------------------------------------------------------

    def begin(self, isolation_level: Any = None) -> None:
        if not self.lazy_begin or isolation_level is not None or self._isolation_level:
            super().begin(isolation_level)
            return
        if self.is_closed() and not self.autoconnect:
            super().begin()  # raises as peewee does: no connection is open
        if self.is_closed():
            self.connect()
        self._state.owes_begin = True

    def commit(self) -> None:
        if self._take_owed_begin():
            return  # nothing ran: there is nothing to commit
        super().commit()

    def rollback(self) -> None:
        if self._take_owed_begin():
            return
        super().rollback()

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        if self._take_owed_begin() and self._in_open_transaction():
            sql = "BEGIN; " + sql
        return self._execute_cursor(sql, params)

    def cursor(self, named_cursor: Any = None) -> Any:
        if self._take_owed_begin() and self._in_open_transaction():
            super().cursor().execute("BEGIN")
        return super().cursor()

    def _take_owed_begin(self) -> bool:
        """Whether `begin()` was called and BEGIN not sent since; forgets it."""
        state = self._state
        owed = bool(getattr(state, "owes_begin", False))
        state.owes_begin = False
        return owed

    def _in_open_transaction(self) -> bool:
        # A BEGIN owed by a transaction that is over (its connection closed under it)
        # is dropped, not sent ahead of an unrelated statement.
        return bool(self._state.transactions) and not self._state.closed

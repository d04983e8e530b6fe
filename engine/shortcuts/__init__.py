"""Performance shortcuts: where Hookline leans on the internals of peewee, psycopg2 or CPython.

Each one is measured (ops/bench/NOTES.md), rests on something its library does
not promise, and is checked by a test that fails loudly when an upgrade breaks
what it rests on (tests/integration/test_shortcut_assumptions.py on PostgreSQL,
tests/unit/test_pool_probe.py, tests/unit/test_worker_tuning.py).

- **Check-out probe skip** (`pool.ShortcutPool`): a connection checked in less
  than `probe_idle_s` ago, idle and open, is handed out without `SELECT 1`.
  Rests on playhouse calling `PooledDatabase._is_closed(conn)` at check-out and
  `_close(conn, close_conn)` at check-in, both under the re-entrant
  `_pool_lock`, and on peewee's `_adapter.txn_status(conn)` and `txn_idle`.
  Off: `probe_idle_s=0` in `engine.db.connect.open_database`.
- **Lazy BEGIN** (`pool.ShortcutPool`): BEGIN goes with a transaction's first
  statement. Rests on peewee's `Database.begin/commit/rollback/cursor/
  execute_sql` being the only ways a transaction reaches the server, on
  `_execute_cursor(sql, params)`, `_state.transactions` and `_state.closed`,
  and on PostgreSQL running "BEGIN; <statement>" as one simple query.
  Off: `lazy_begin=False` in `open_database`.
- **COPY for hot inserts** (`copy.copy_rows`): events, deliveries and attempts
  go by one COPY. Rests on psycopg2's `cursor.copy_expert(sql, file)` and
  `rowcount`, peewee's `__exception_wrapper__`, and COPY's text format reading
  back each field class's values as an INSERT stores them.
  Off: `copies=False` in `open_database` (rows are INSERTed).
- **uvloop** (`loop.install_event_loop`, and `api.server.Worker` for uvicorn):
  the worker's, the supervisor's and the API's event loops are uvloop's. Rests
  on dramatiq's `EventLoopThread` making its loop with `asyncio.new_event_loop()`
  (the policy's), and on uvloop running aiohttp's client and uvicorn's httptools
  protocol as asyncio's loop does (`socket_factory` sockets included).
  Off: `HOOKLINE_EVENT_LOOP=asyncio`.
- **Interpreter tuning** (`interpreter`): a 1 ms GIL switch interval, the
  youngest GC generation every 10,000 allocations, the startup heap frozen.
  Rests on CPython's `sys.setswitchinterval`, `gc.set_threshold`, `gc.freeze`.
  Off: drop the calls in `actors.worker.setup`.
"""

from __future__ import annotations

from engine.shortcuts.copy import copy_plan, copy_rows
from engine.shortcuts.interpreter import (
    GC_THRESHOLDS,
    GIL_SWITCH_INTERVAL_S,
    freeze_heap,
    tune_interpreter,
)
from engine.shortcuts.loop import install_event_loop, loop_name
from engine.shortcuts.pool import PROBE_IDLE_S, ShortcutPool

__all__ = [
    "GC_THRESHOLDS",
    "GIL_SWITCH_INTERVAL_S",
    "PROBE_IDLE_S",
    "ShortcutPool",
    "copy_plan",
    "copy_rows",
    "freeze_heap",
    "install_event_loop",
    "loop_name",
    "tune_interpreter",
]

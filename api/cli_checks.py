"""What each process checks before it starts its work: what no wait would mend.

`hookline api`, `worker`, `scheduler` and `supervisor` stop at once, with one line naming the
setting, when the database is not migrated to this code's schema, when endpoint secrets could
not be opened, or when RabbitMQ refuses the vhost, the credentials or the queues' type. An
outage of either service is not checked here: each process waits it out. Before the checks,
each logs one line, `hookline_starting`, with what it runs against (passwords masked).
"""

from __future__ import annotations

import os

import structlog

from engine import __version__
from engine.db.connect import UNAVAILABLE_ERRORS, open_database
from engine.db.migrations import current_version, latest_version
from engine.errors import SettingsError
from engine.settings import Settings, masked_url

log = structlog.get_logger("hookline.start")


def before_start(settings: Settings, role: str, *, secret_key: bool = True) -> None:
    """Log what this process runs against, then run every check; the first that fails raises.

    Raises:
        engine.errors.SettingsError: names the setting to fix (`QueueMismatchError` is one).
    """
    log.info("hookline_starting", **starting_line(settings, role))
    if secret_key:
        _secret_key(settings)
    _schema(settings)
    _queues(settings)


# What each role listens on besides the database and the broker, by setting.
_LISTENS = {
    "api": ("bind", "api_workers"),
    "worker": ("worker_metrics_bind", "worker_processes", "worker_threads"),
    "scheduler": ("scheduler_metrics_bind",),
    "supervisor": ("supervisor_metrics_bind",),
}


def starting_line(settings: Settings, role: str) -> dict[str, object]:
    """The settings that matter to an operator reading one process's first line, passwords
    masked: where its database and broker are, what it listens on, how it logs."""
    line: dict[str, object] = {
        "role": role,
        "version": __version__,
        "pid": os.getpid(),
        "database": masked_url(settings.effective_database_url),
        "broker": masked_url(settings.broker_url) if settings.broker_url else "in-process",
        "queue_type": settings.queue_type,
        "log_level": settings.log_level,
    }
    line.update({name: getattr(settings, name) for name in _LISTENS.get(role, ())})
    return line


def _secret_key(settings: Settings) -> None:
    """Endpoint secrets can be opened with the configured key."""
    from engine import secretbox

    secretbox.from_settings(settings)


def _schema(settings: Settings) -> None:
    """The database is migrated to this code's schema.

    A process on an older schema would fail every statement that touches what is missing,
    and log each failure with its traceback, forever. A database that cannot be reached is
    an outage, which each process waits out itself; one that is newer than this code is a
    rolling upgrade in progress, and left alone.
    """
    database = open_database(settings)
    try:
        with database.connection_context():
            have = current_version(database)
    except UNAVAILABLE_ERRORS:
        return
    want = latest_version()
    if have < want:
        raise SettingsError(
            "HOOKLINE_DATABASE_URL",
            f"the database at {masked_url(settings.effective_database_url)} is at schema version"
            f" {have} of {want}: run `hookline migrate` first",
        )


def _queues(settings: Settings) -> None:
    """RabbitMQ lets Hookline in, and holds its queues of the configured type."""
    from actors.registry import check_queues

    check_queues(settings)

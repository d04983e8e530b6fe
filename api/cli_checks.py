"""What each process checks before it starts its work: what no wait would mend.

`hookline api`, `worker`, `scheduler` and `supervisor` stop at once, with one line naming the
setting, when the database is not migrated to this code's schema, when endpoint secrets could
not be opened, or when RabbitMQ refuses the vhost, the credentials or the queues' type. An
outage of either service is not checked here: each process waits it out.
"""

from __future__ import annotations

from engine.db.connect import UNAVAILABLE_ERRORS, open_database
from engine.db.migrations import current_version, latest_version
from engine.errors import SettingsError
from engine.settings import Settings, masked_url


def before_start(settings: Settings, *, secret_key: bool = True) -> None:
    """Run every check; the first that fails raises.

    Raises:
        engine.errors.SettingsError: names the setting to fix (`QueueMismatchError` is one).
    """
    if secret_key:
        _secret_key(settings)
    _schema(settings)
    _queues(settings)


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

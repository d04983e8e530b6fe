"""The engine's error tree.

    EngineError
    ├── SettingsError           a setting is missing or malformed (names the variable)
    │   └── QueueMismatchError      RabbitMQ holds a queue of another type (actors.queues)
    ├── NotFoundError           no such row for this tenant
    ├── ConflictError           the request clashes with the stored state
    ├── InvalidInputError       a value the schema admits but the domain refuses (names the field)
    │   └── SchemaViolationError    a payload its event type's schema refuses (engine.events)
    ├── ForbiddenError          the credential lacks a scope the request needs (names the scope)
    ├── UnavailableError        the database cannot be reached right now (raised by engine.db)
    ├── CryptoError             a stored secret does not decrypt with the configured keys
    ├── MigrationError          the schema cannot be brought up to date
    ├── TransitionError         a status change its state machine's table does not allow (a bug)
    ├── TransformError          an endpoint's transform gives no body that can be sent
    │                           (engine.endpoints.transforms; a delivery makes it an outcome)
    ├── ReceiverAuthError       a receiver's OAuth2 token server gave no token
    │                           (engine.deliveries.receiver_tokens; an `auth_error` outcome)
    ├── MalformedError          a value handed to a pure function is not well-formed (a ValueError)
    │   ├── InvalidIdError          an id, its prefix or its timestamp (engine.ids)
    │   ├── InvalidScheduleError    a retry schedule (engine.retry)
    │   └── SigningError            a secret or a signature (engine.signing)
    │       ├── InvalidSecretError      not `whsec_` and base64 of 24 to 64 bytes
    │       └── SignatureError          headers or signature that do not verify
    └── RefusedAddressError     the SSRF guard refused a connection (a PermissionError, so
                                aiohttp reports it as a connection failure; engine.ssrf)

The classes of a module's own concept stay defined in it, under this tree. The
API maps each branch to one problem+json (`api.errors`); a `MalformedError` or
a `RefusedAddressError` that reaches it is a bug, answered 500. Delivery
outcomes are values (`engine.deliveries.client.Outcome`), never exceptions.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class SettingsError(EngineError):
    """A setting is missing or malformed."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


class NotFoundError(EngineError):
    """No row with that id belongs to the caller's tenant."""

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident!r} not found")
        self.kind = kind
        self.ident = ident


class ConflictError(EngineError):
    """The request clashes with the stored state."""


class InvalidInputError(EngineError):
    """A value passed the schema but the domain refuses it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ForbiddenError(EngineError):
    """The credential lacks a scope the request needs."""

    def __init__(self, scope: str, message: str) -> None:
        super().__init__(f"{scope}: {message}")
        self.scope = scope
        self.message = message


class UnavailableError(EngineError):
    """The database cannot be reached right now; the caller may retry."""


class CryptoError(EngineError):
    """A stored secret does not decrypt: its key is not configured, or it was altered."""


class MigrationError(EngineError):
    """The schema cannot be brought up to date."""


class TransitionError(EngineError):
    """A status change outside its state machine's table: a programming error, never input."""

    def __init__(self, machine: str, from_: str | None, to: str) -> None:
        wrong = (
            f"{to!r} is not an initial state"
            if from_ is None
            else f"{from_!r} -> {to!r} is not an allowed transition"
        )
        super().__init__(f"{machine}: {wrong}")
        self.machine = machine
        self.from_ = from_
        self.to = to


class MalformedError(EngineError, ValueError):
    """A value handed to a pure engine function is not well-formed."""

"""Settings: read once from the environment, validated, frozen.

Nothing else in Hookline reads the environment. Every field has a default and
a one-line comment; the README's settings table repeats them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from engine import env_parsers as parse
from engine.errors import SettingsError

PREFIX = "HOOKLINE_"
DEFAULT_RETRY_SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
IPNetwork = parse.IPNetwork


@dataclass(frozen=True)
class Settings:
    """Every knob Hookline has, with its default."""

    # PostgreSQL URL (postgresql://user@host:5432/db); unset = embedded SQLite under data_dir.
    database_url: str | None = None
    # RabbitMQ URL (amqp://guest:guest@127.0.0.1:5672/%2F); unset = in-process broker.
    broker_url: str | None = None
    # Bearer token for the admin API (POST /v1/tenants); unset = admin API disabled.
    admin_token: str | None = None
    # host:port the API listens on.
    bind: str = "127.0.0.1:8000"
    # Directory for the embedded database and other local state.
    data_dir: str = "var"
    # Largest request body accepted, in bytes.
    max_body_bytes: int = 256 * 1024
    # Largest `POST /v1/events/batch` body accepted, in bytes (up to 500 events).
    max_batch_bytes: int = 5 * 1024 * 1024
    # Deepest an event's payload may nest, in levels of objects and arrays; deeper is 422.
    max_payload_depth: int = 64
    # Gunicorn worker processes for `hookline api`.
    api_workers: int = 2
    # Threads per API worker process for blocking work (the database, JWT keys); requests
    # themselves are served on one event loop per process.
    api_threads: int = 16
    # Dramatiq worker processes for `hookline worker`.
    worker_processes: int = 2
    # Threads per worker process (`deliver` messages handled at once per process).
    worker_threads: int = 64
    # Most deliveries one `deliver` message carries; a worker sends them concurrently.
    deliver_batch: int = 50
    # Seconds a worker waits on a message's slowest attempts before letting them finish alone.
    deliver_handoff_s: float = 0.25
    # A fan-out sends its first attempts while its transaction commits; false = commit, then send.
    early_first_attempts: bool = True
    # Attempts in flight per worker process, across its threads.
    worker_max_in_flight: int = 1024
    # Bytes of event payloads a worker process holds in flight (body and stored copy); 0 = no bound.
    worker_max_in_flight_bytes: int = 64 * 1024 * 1024
    # Pooled database connections per process.
    db_max_connections: int = 16
    # Seconds a thread waits for a pooled database connection.
    db_pool_timeout_s: float = 10.0
    # Seconds to open a TCP connection to an endpoint.
    connect_timeout_s: float = 5.0
    # Seconds for a whole delivery attempt (connect, send, read).
    request_timeout_s: float = 15.0
    # Bytes of an endpoint's response body read and stored (as UTF-8; NUL becomes U+FFFD).
    max_response_bytes: int = 64 * 1024
    # Parallel connections per endpoint host, per worker process.
    max_connections_per_host: int = 16
    # Seconds to wait after each attempt: after attempt 1, 2, ... (comma-separated).
    retry_schedule_s: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE_S
    # A delivery older than this (seconds since its event) is quarantined, not retried.
    max_age_s: int = 4 * 24 * 3600
    # Seconds between scheduler passes.
    scheduler_interval_s: float = 1.0
    # Seconds between the scheduler's releases of deliveries waiting for their endpoint's flow.
    flow_interval_s: float = 0.05
    # Days events, deliveries and attempts are kept after the event (a tenant may override).
    retention_days: int = 30
    # Seconds between the scheduler's retention passes (partitions made ahead, old data removed).
    retention_interval_s: float = 60.0
    # Events deleted per transaction by retention's batched deletes (with theirs).
    retention_batch: int = 500
    # Deliveries per second a replay, backfill or resume sends each endpoint, unless asked.
    replay_rate_per_s: int = 50
    # Highest concurrency adaptive control raises an endpoint to before it lifts its limit.
    adaptive_ceiling: int = 100
    # A success within this many seconds counts toward raising an endpoint's learnt concurrency.
    adaptive_fast_s: float = 1.0
    # Most due deliveries the scheduler publishes per pass.
    scheduler_batch: int = 500
    # Seconds a published delivery may wait unclaimed before the scheduler publishes it again.
    queue_lease_s: int = 300
    # Seconds a worker's claim on a delivery outlives the request timeout.
    lease_grace_s: float = 30.0
    # Seconds an unacknowledged event waits before the scheduler fans it out again.
    fan_out_lease_s: int = 30
    # RabbitMQ queue type: classic, or quorum (with a delivery limit); README "Queue types".
    queue_type: str = "classic"
    # Quorum queues: deliveries of one message before RabbitMQ dead-letters it as poison.
    queue_delivery_limit: int = 20
    # Claims of one delivery that ended without an outcome (its worker died) before quarantine.
    max_lost_attempts: int = 5
    # RabbitMQ heartbeat in seconds.
    broker_heartbeat_s: int = 30
    # Seconds a publish may wait while RabbitMQ blocks publishers before it fails.
    broker_blocked_timeout_s: float = 10.0
    # DANGEROUS: let deliveries reach loopback, private and link-local addresses.
    dangerous_allow_private_networks: bool = False
    # CIDRs deliveries may reach even though they are private (comma-separated).
    allowed_cidrs: tuple[IPNetwork, ...] = ()
    # Base64 32-byte key sealing endpoint secrets; unset: <data_dir>/secret.key (embedded only).
    secret_key: str | None = field(default=None, repr=False)
    # Older keys (comma-separated base64) still accepted to decrypt, until `secrets rotate-key`.
    secret_key_previous: tuple[str, ...] = field(default=(), repr=False)
    # Seconds a rotated-out endpoint secret keeps signing beside the new one (at most 7 days).
    secret_rotation_grace_s: int = 24 * 3600
    # Every new endpoint must echo a verification challenge first, even with `verify: false`.
    verify_endpoints_default: bool = False
    # Seconds an API process trusts a key it authenticated, unread; 0 = read it on every request.
    credential_cache_ttl_s: float = 1.0
    # Failed authentications a minute one address may make per API process before 429; 0 = no limit.
    auth_failures_per_min: int = 30
    # Proxies (CIDRs, comma-separated) whose X-Forwarded-For names the client's address.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # Seconds an API process trusts its copy of a tenant's event-type catalog before re-checking.
    event_types_cache_s: float = 2.0
    # Requests per second one credential may send to POST /v1/events; 0 = no limit.
    # The default is twice the 10,000 events/s batch ingest aims at, so it never binds first.
    rate_limit_ingest_per_s: int = 20_000
    # Requests per second one credential may send to the other tenant routes; 0 = no limit.
    rate_limit_management_per_s: int = 100
    # Requests per second a whole tenant may send to POST /v1/events; 0 = no limit.
    rate_limit_tenant_ingest_per_s: int = 20_000
    # Requests per second a whole tenant may send to the other tenant routes; 0 = no limit.
    rate_limit_tenant_management_per_s: int = 200
    # Sizes rate-limit leases: 1/this of what an API process spent per bucket the second before,
    # topped up in the background (at most about twice this many a second); a limit may go
    # under-used by 1/this of it plus 0.1 % per API process (README: Rate limits).
    rate_limit_leases_per_s: int = 20
    # Secret for HS256 JWT bearer tokens, at least 32 characters; unset = HS256 refused.
    jwt_hs256_secret: str | None = field(default=None, repr=False)
    # PEM file with the RSA or EC public key that signs RS256/ES256 JWTs; unset = none.
    jwt_public_key_file: str | None = None
    # JWKS file (JSON) with the RSA or EC public keys that sign RS256/ES256 JWTs; unset = none.
    jwt_jwks_file: str | None = None
    # JWT algorithms accepted (comma-separated HS256, RS256, ES256); unset = all the keys allow.
    jwt_algorithms: tuple[str, ...] = ()
    # The `iss` every JWT must carry; unset = not checked.
    jwt_issuer: str | None = None
    # The `aud` every JWT must carry; unset = a JWT that carries an `aud` is refused.
    jwt_audience: str | None = None
    # JWT claim holding the tenant id.
    jwt_tenant_claim: str = "tenant"
    # JWT claim holding the scopes (a space-separated string or a list).
    jwt_scope_claim: str = "scope"
    # Seconds of clock skew tolerated on a JWT's `exp` and `nbf` (local keys and OAuth2 alike).
    jwt_leeway_s: int = 30
    # OAuth2/OIDC identity provider whose tokens are accepted: its keys by OIDC discovery at
    # `<issuer>/.well-known/openid-configuration`; its tokens must carry this `iss`. https, or
    # http to a loopback host; unset = no provider (unless a JWKS URL is set).
    oauth2_issuer: str | None = None
    # The provider's JWKS URL, when it has no discovery document (or to skip it); unset = found
    # by discovery. Keys are cached; an unknown `kid` refetches at most once per 30 s.
    oauth2_jwks_url: str | None = None
    # The `aud` the provider's tokens must carry; required with an issuer or a JWKS URL.
    oauth2_audience: str | None = None
    # Claim of the provider's tokens holding the tenant id.
    oauth2_tenant_claim: str = "tenant_id"
    # Claim holding the scopes: a space-separated string (`scope`) or a list (`scp`); with
    # `scope`, a token without it is read from `scp`.
    oauth2_scope_claim: str = "scope"
    # Prefix of the provider's scopes that name Hookline's: with `hookline:`, the scope
    # `hookline:events:write` grants `events:write`; others are ignored. Empty = none.
    oauth2_scope_prefix: str = ""
    # Seconds an access token from Hookline's own token endpoint (`/oauth/token`) lives.
    oauth2_token_ttl_s: int = 900
    # Requests to `/oauth/token`, introspect and revoke per minute, per client and per source
    # address, in each API process; 0 = no limit.
    oauth2_token_requests_per_min: int = 60
    # Seconds of outcomes the breaker judges an endpoint on (10-second buckets).
    breaker_window_s: int = 300
    # Attempts the window must hold before its failure rate can open the breaker.
    breaker_min_attempts: int = 10
    # Percentage of failed attempts in the window that opens the breaker.
    breaker_failure_pct: float = 70.0
    # Consecutive failed attempts that open the breaker, whatever the window holds.
    breaker_consecutive_failures: int = 20
    # Seconds an open breaker waits before one probe delivery; doubled after each failed probe.
    breaker_cooldown_s: float = 30.0
    # Longest wait between probes, in seconds.
    breaker_max_cooldown_s: float = 600.0
    # Seconds a breaker may stay open before its endpoint is disabled (warnings at 50/70/90 %).
    breaker_disable_after_s: int = 3 * 86400
    # Parked deliveries released per second and endpoint once its breaker closes.
    breaker_release_per_s: float = 50.0
    # Seconds between two quarantine digests of one endpoint (`delivery.quarantined` alerts).
    alert_digest_s: int = 300
    # Slack incoming-webhook URL that receives alerts; unset = no Slack alerts.
    alert_slack_webhook_url: str | None = field(default=None, repr=False)
    # PagerDuty Events API v2 routing key; unset = no PagerDuty alerts.
    alert_pagerduty_routing_key: str | None = field(default=None, repr=False)
    # PagerDuty Events API v2 URL alerts are posted to.
    alert_pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    # SMTP server that sends alert emails; unset = no email alerts.
    alert_smtp_host: str | None = None
    # SMTP server port.
    alert_smtp_port: int = 587
    # Upgrade the SMTP connection with STARTTLS before sending.
    alert_smtp_starttls: bool = True
    # SMTP user name; unset = no authentication.
    alert_smtp_username: str | None = None
    # SMTP password, with HOOKLINE_ALERT_SMTP_USERNAME.
    alert_smtp_password: str | None = field(default=None, repr=False)
    # Sender address of alert emails; required with HOOKLINE_ALERT_SMTP_HOST.
    alert_smtp_from: str | None = None
    # Recipients of alert emails (comma-separated addresses).
    alert_smtp_to: tuple[str, ...] = ()
    # URL that receives alerts as signed Standard Webhooks; unset = none.
    alert_webhook_url: str | None = None
    # The whsec_ secret that signs alert webhooks; required with HOOKLINE_ALERT_WEBHOOK_URL.
    alert_webhook_secret: str | None = field(default=None, repr=False)
    # The API's public base URL, for links in alerts; unset = http://<HOOKLINE_BIND>.
    public_url: str | None = None
    # host:port where `hookline worker` serves /metrics for all its processes.
    worker_metrics_bind: str = "127.0.0.1:9191"
    # host:port where `hookline scheduler` serves /metrics.
    scheduler_metrics_bind: str = "127.0.0.1:9192"
    # host:port where `hookline supervisor` serves /metrics.
    supervisor_metrics_bind: str = "127.0.0.1:9193"
    # Log level: debug, info, warning, error.
    log_level: str = "info"
    # Log format: json, console, or auto (console on a terminal).
    log_format: str = "auto"
    # One `request` line per API request at info level: method, path, status, duration,
    # request and tenant ids (never the credential); false = none.
    access_log: bool = True
    # The event loop that serves the API and sends attempts: uvloop, or asyncio (the stdlib's).
    event_loop: str = "uvloop"

    @property
    def embedded(self) -> bool:
        """True when running on SQLite and the in-process broker."""
        return self.database_url is None or self.broker_url is None

    @property
    def effective_database_url(self) -> str:
        """The database URL to connect to, the embedded SQLite file when unset."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{os.path.abspath(os.path.join(self.data_dir, 'hookline.db'))}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every HOOKLINE_* variable.

        Raises:
            SettingsError: a variable is malformed; the message names it.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = PREFIX + spec.name.upper()
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                continue
            values[spec.name] = _PARSERS[spec.name](name, raw.strip())
        settings = cls(**values)
        settings.validate()
        return settings

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced, validated."""
        settings = dataclasses.replace(self, **changes)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check the values together.

        Raises:
            SettingsError: a value or a combination of values is unusable.
        """
        if self.request_timeout_s < self.connect_timeout_s:
            raise SettingsError(
                PREFIX + "REQUEST_TIMEOUT_S", "must be at least HOOKLINE_CONNECT_TIMEOUT_S"
            )
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise SettingsError(PREFIX + "LOG_LEVEL", "must be debug, info, warning or error")
        if self.log_format not in ("json", "console", "auto"):
            raise SettingsError(PREFIX + "LOG_FORMAT", "must be json, console or auto")
        if self.event_loop not in ("uvloop", "asyncio"):
            raise SettingsError(PREFIX + "EVENT_LOOP", "must be uvloop or asyncio")
        if self.queue_type not in ("classic", "quorum"):
            raise SettingsError(PREFIX + "QUEUE_TYPE", "must be classic or quorum")
        self._validate_jwt()
        self._validate_alerts()

    def _validate_jwt(self) -> None:
        """Every accepted JWT algorithm has a key to check it with."""
        if "HS256" in self.jwt_algorithms and not self.jwt_hs256_secret:
            raise SettingsError(PREFIX + "JWT_ALGORITHMS", "HS256 needs HOOKLINE_JWT_HS256_SECRET")
        public = self.jwt_public_key_file or self.jwt_jwks_file
        if {"RS256", "ES256"} & set(self.jwt_algorithms) and not public:
            raise SettingsError(
                PREFIX + "JWT_ALGORITHMS",
                "RS256 and ES256 need HOOKLINE_JWT_PUBLIC_KEY_FILE or HOOKLINE_JWT_JWKS_FILE",
            )
        oauth2 = self.oauth2_issuer or self.oauth2_jwks_url
        if oauth2 and not self.oauth2_audience:
            raise SettingsError(PREFIX + "OAUTH2_AUDIENCE", "is required with an OAuth2 provider")
        if self.oauth2_jwks_url and not self.oauth2_issuer and public:
            # Which keys check a token is decided by its `iss`: name the provider's.
            raise SettingsError(PREFIX + "OAUTH2_ISSUER", "is required beside local public keys")
        # Shorter HMAC keys can be brute-forced; pyjwt warns below 32 bytes too.
        if self.jwt_hs256_secret is not None and len(self.jwt_hs256_secret.encode()) < 32:
            raise SettingsError(PREFIX + "JWT_HS256_SECRET", "must be at least 32 bytes")

    def _validate_alerts(self) -> None:
        """Every configured alert channel has what it needs to send."""
        if self.alert_smtp_host and not self.alert_smtp_from:
            raise SettingsError(PREFIX + "ALERT_SMTP_FROM", "is required with an SMTP host")
        if bool(self.alert_smtp_username) != bool(self.alert_smtp_password):
            raise SettingsError(
                PREFIX + "ALERT_SMTP_PASSWORD", "set both the SMTP user name and password, or none"
            )
        if self.alert_webhook_url and not self.alert_webhook_secret:
            raise SettingsError(PREFIX + "ALERT_WEBHOOK_SECRET", "is required with a webhook URL")
        if self.breaker_max_cooldown_s < self.breaker_cooldown_s:
            raise SettingsError(
                PREFIX + "BREAKER_MAX_COOLDOWN_S", "must be at least HOOKLINE_BREAKER_COOLDOWN_S"
            )


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "database_url": parse.url("postgres", "postgresql", "sqlite"),
    "broker_url": parse.url("amqp", "amqps"),
    "admin_token": parse.secret,
    "bind": parse.bind,
    "data_dir": parse.text,
    "max_body_bytes": parse.integer(1024, 64 * 1024 * 1024),
    "max_batch_bytes": parse.integer(1024, 256 * 1024 * 1024),
    "max_payload_depth": parse.integer(1, 500),
    "api_workers": parse.integer(1, 256),
    "api_threads": parse.integer(1, 1024),
    "worker_processes": parse.integer(1, 256),
    "worker_threads": parse.integer(1, 1024),
    "deliver_batch": parse.integer(1, 1000),
    "deliver_handoff_s": parse.number(0.01, 600),
    "early_first_attempts": parse.boolean,
    "worker_max_in_flight": parse.integer(1, 100_000),
    "worker_max_in_flight_bytes": parse.integer(0, 64 * 1024 * 1024 * 1024),
    "db_max_connections": parse.integer(1, 1000),
    "db_pool_timeout_s": parse.number(0.1, 300),
    "connect_timeout_s": parse.number(0.1, 120),
    "request_timeout_s": parse.number(0.1, 600),
    "max_response_bytes": parse.integer(0, 16 * 1024 * 1024),
    "max_connections_per_host": parse.integer(1, 1024),
    "retry_schedule_s": parse.schedule,
    "max_age_s": parse.integer(60, 90 * 86400),
    "scheduler_interval_s": parse.number(0.05, 60),
    "flow_interval_s": parse.number(0.01, 10),
    "retention_days": parse.integer(1, 3650),
    "retention_interval_s": parse.number(1, 86400),
    "retention_batch": parse.integer(1, 10_000),
    "replay_rate_per_s": parse.integer(1, 10_000),
    "adaptive_ceiling": parse.integer(2, 10_000),
    "adaptive_fast_s": parse.number(0.001, 600),
    "scheduler_batch": parse.integer(1, 100_000),
    "queue_lease_s": parse.integer(5, 86400),
    "fan_out_lease_s": parse.integer(1, 86400),
    "lease_grace_s": parse.number(0.5, 3600),
    "queue_type": parse.choice("classic", "quorum"),
    "queue_delivery_limit": parse.integer(1, 1_000_000),
    "max_lost_attempts": parse.integer(1, 1000),
    "broker_heartbeat_s": parse.integer(0, 3600),
    "broker_blocked_timeout_s": parse.number(0.1, 600),
    "dangerous_allow_private_networks": parse.boolean,
    "allowed_cidrs": parse.cidrs,
    "secret_key": parse.aes_key,
    "secret_key_previous": parse.aes_keys,
    "secret_rotation_grace_s": parse.integer(0, 7 * 86400),
    "verify_endpoints_default": parse.boolean,
    "credential_cache_ttl_s": parse.number(0, 60),
    "auth_failures_per_min": parse.integer(0, 1_000_000),
    "trusted_proxies": parse.cidrs,
    "event_types_cache_s": parse.number(0, 60),
    "rate_limit_ingest_per_s": parse.integer(0, 1_000_000),
    "rate_limit_management_per_s": parse.integer(0, 1_000_000),
    "rate_limit_tenant_ingest_per_s": parse.integer(0, 1_000_000),
    "rate_limit_tenant_management_per_s": parse.integer(0, 1_000_000),
    "rate_limit_leases_per_s": parse.integer(1, 1000),
    "jwt_hs256_secret": parse.text,
    "jwt_public_key_file": parse.file,
    "jwt_jwks_file": parse.file,
    "jwt_algorithms": parse.jwt_algorithms,
    "jwt_issuer": parse.text,
    "jwt_audience": parse.text,
    "jwt_tenant_claim": parse.claim,
    "jwt_scope_claim": parse.claim,
    "jwt_leeway_s": parse.integer(0, 3600),
    "oauth2_issuer": parse.trusted_url,
    "oauth2_jwks_url": parse.trusted_url,
    "oauth2_audience": parse.text,
    "oauth2_tenant_claim": parse.claim,
    "oauth2_scope_claim": parse.claim,
    "oauth2_scope_prefix": parse.claim,
    "oauth2_token_ttl_s": parse.integer(60, 3600),
    "oauth2_token_requests_per_min": parse.integer(0, 1_000_000),
    "breaker_window_s": parse.integer(10, 86400),
    "breaker_min_attempts": parse.integer(1, 1_000_000),
    "breaker_failure_pct": parse.number(1, 100),
    "breaker_consecutive_failures": parse.integer(1, 1_000_000),
    "breaker_cooldown_s": parse.number(0.1, 86400),
    "breaker_max_cooldown_s": parse.number(0.1, 7 * 86400),
    "breaker_disable_after_s": parse.integer(1, 90 * 86400),
    "breaker_release_per_s": parse.number(0.01, 100_000),
    "alert_digest_s": parse.integer(1, 86400),
    "alert_slack_webhook_url": parse.url("http", "https"),
    "alert_pagerduty_routing_key": parse.claim,
    "alert_pagerduty_url": parse.url("http", "https"),
    "alert_smtp_host": parse.text,
    "alert_smtp_port": parse.integer(1, 65535),
    "alert_smtp_starttls": parse.boolean,
    "alert_smtp_username": parse.text,
    "alert_smtp_password": parse.text,
    "alert_smtp_from": lambda name, raw: parse.addresses(name, raw)[0],
    "alert_smtp_to": parse.addresses,
    "alert_webhook_url": parse.url("http", "https"),
    "alert_webhook_secret": parse.whsec,
    "public_url": parse.url("http", "https"),
    "worker_metrics_bind": parse.bind,
    "scheduler_metrics_bind": parse.bind,
    "supervisor_metrics_bind": parse.bind,
    "log_level": parse.choice("debug", "info", "warning", "error"),
    "log_format": parse.choice("json", "console", "auto"),
    "access_log": parse.boolean,
    "event_loop": parse.choice("uvloop", "asyncio"),
}


def masked_url(url: str) -> str:
    """`url` with its password, if any, replaced by `***`: safe to print and log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc[-1]}"))

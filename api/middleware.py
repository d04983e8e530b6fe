"""Falcon middleware: request ids and logs, auth, rate limits; each runs on the event loop."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import falcon
import structlog

from api.auth_failures import FailedAuth
from api.errors import Problem
from api.offload import Offload, OnLoop
from api.tokens import ProviderUnavailable, TokenError, TokenVerifier
from engine.settings import Settings
from engine.tenancy import ratelimit
from engine.tenancy.credentials import CredentialCache, Principal
from engine.tenancy.limiter import Deferred, Limiter
from engine.tenancy.tenants import (
    KEY_PREFIX,
    authenticate_key,
    cached_principal,
    find_tenant,
    is_admin_token,
)

log = structlog.get_logger("hookline.api")
T = TypeVar("T")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_MAX_TOKEN_CHARS = 8192
# Paths the access log writes at debug level only.
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestContext(OnLoop):
    """Binds a request id to the logs and answers it in `X-Request-Id`; with `access_log`,
    logs one `request` line per request once it is answered (its tenant's id bound by
    `Auth`, never the credential)."""

    def __init__(self, access_log: bool = True) -> None:
        self.access_log = access_log

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        offered = req.get_header("X-Request-Id")
        request_id = offered if offered and _REQUEST_ID.match(offered) else uuid.uuid4().hex
        req.context.request_id = request_id
        req.context.started = time.perf_counter()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        request_id = getattr(req.context, "request_id", None)
        if request_id:
            resp.set_header("X-Request-Id", request_id)
        if self.access_log:
            started = getattr(req.context, "started", None)
            elapsed_ms = (time.perf_counter() - started) * 1000 if started else None
            quiet = req.path in _PROBES  # a load balancer's probes, every few seconds
            (log.debug if quiet else log.info)(
                "request",
                method=req.method,
                path=req.path,
                status=resp.status_code,
                duration_ms=None if elapsed_ms is None else round(elapsed_ms, 3),
            )
        structlog.contextvars.clear_contextvars()


class Auth:
    """Checks the bearer credential, and the scope, a resource asks for.

    A resource declares `auth = "tenant"` (the default), `"admin"`, `"tenant_or_admin"`
    (the admin token, or a tenant credential with the scope) or `None`. A suspended or
    deleting tenant's credential is refused with 403 (`tenant-suspended`,
    `tenant-deleting`); a cached principal carries the state it was read with, and
    suspending empties the caches through their generation.
    A tenant resource declares `scopes`, the scope each HTTP method needs
    (`{"GET": "endpoints:read", "POST": "endpoints:write"}`); a method it
    serves without declaring a scope fails closed. The credential is an API
    key (`hk_...`) or, when configured, a JWT. The tenant's principal is put
    on `req.context.principal`. With a `credentials` cache, an API key is read
    from the database once per its TTL rather than on every request.
    """

    def __init__(
        self,
        settings: Settings,
        tokens: TokenVerifier | None = None,
        credentials: CredentialCache | None = None,
        offload: Offload | None = None,
        failures: FailedAuth | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens or TokenVerifier(settings)
        self.credentials = credentials
        self.offload = offload
        self.failures = failures or FailedAuth(
            settings.auth_failures_per_min, trusted_proxies=settings.trusted_proxies
        )

    async def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        """A remembered key is checked on the loop; one to look up, on the offload's threads.

        An address past its budget of failed authentications (`api.auth_failures`) is
        refused before its credential is looked up, or the admin token compared; a key this
        process remembers is still served.
        """
        kind = getattr(resource, "auth", "tenant") if resource is not None else None
        if kind is None:
            return
        token = _bearer(req)
        if kind == "admin" or (kind == "tenant_or_admin" and self._is_admin(token)):
            self._admit(req)
            self._counted(req, self._check_admin, token)
            req.context.admin = True
            return
        principal = None
        if self.credentials is not None:
            principal = cached_principal(token, self.credentials)
        if principal is None:
            self._admit(req)
            try:
                principal = await _blocking(self.offload, self._principal, token)
            except Problem as problem:
                self._count(req, problem)
                raise
        req.context.principal = principal
        structlog.contextvars.bind_contextvars(tenant_id=principal.tenant_id)
        _require_active(principal)
        _require_scope(req.method, resource, principal)

    def _admit(self, req: falcon.Request) -> None:
        """Raise a 429 if the request's address spent its failed authentications."""
        retry_after = self.failures.retry_after(self.failures.address(req))
        if retry_after is not None:
            raise Problem(
                429,
                "too-many-failed-authentications",
                "Too many failed authentications",
                f"This address presented too many wrong credentials; retry after {retry_after} s.",
                field="Authorization",
                headers={"Retry-After": str(retry_after)},
            )

    def _counted(self, req: falcon.Request, check: Callable[[str], None], token: str) -> None:
        try:
            check(token)
        except Problem as problem:
            self._count(req, problem)
            raise

    def _count(self, req: falcon.Request, problem: Problem) -> None:
        if problem.status_code == 401:
            self.failures.failed(self.failures.address(req))

    def _is_admin(self, token: str) -> bool:
        return is_admin_token(token, self.settings.admin_token)

    def _check_admin(self, token: str) -> None:
        if not self.settings.admin_token:
            raise Problem(
                403,
                "admin-disabled",
                "Admin API disabled",
                "Set HOOKLINE_ADMIN_TOKEN to use the admin API, or run `hookline tenants create`.",
            )
        if not is_admin_token(token, self.settings.admin_token):
            raise _unauthorized("The admin token is missing or wrong.")

    def _principal(self, token: str) -> Principal:
        if token.startswith(KEY_PREFIX) or not self.tokens.accepts(token):
            principal = authenticate_key(token, self.credentials)
            if principal is None:
                raise _unauthorized("The API key is missing, unknown or revoked.")
            return principal
        if len(token) > _MAX_TOKEN_CHARS:
            raise _unauthorized("The bearer token is too long.")
        try:
            claims = self.tokens.verify(token)
        except ProviderUnavailable as exc:  # not the caller's fault: not a failed attempt
            raise Problem(
                503,
                "identity-provider-unavailable",
                "Identity provider unavailable",
                f"{exc} Retry shortly.",
                field="Authorization",
                headers={"Retry-After": "30"},
            ) from None
        except TokenError as exc:
            raise _unauthorized(str(exc)) from None
        tenant = find_tenant(claims.tenant_id)
        if tenant is None:
            raise _unauthorized("The token names a tenant that does not exist.")
        return Principal(
            tenant.id,
            claims.credential_id,
            claims.scopes,
            tenant.rate_limits,
            tenant_status=tenant.status,
            subject=claims.subject,
        )


def _require_active(principal: Principal) -> None:
    """Raise unless the principal's tenant is active (`engine.tenancy.states`).

    Raises:
        Problem: 403 `tenant-suspended` or `tenant-deleting`.
    """
    if principal.tenant_status == "active":
        return
    if principal.tenant_status == "deleting":
        raise Problem(
            403, "tenant-deleting", "Tenant being deleted", "This tenant is being deleted."
        )
    raise Problem(
        403,
        "tenant-suspended",
        "Tenant suspended",
        "This tenant is suspended: its requests are refused and its deliveries wait "
        "until the operator resumes it.",
    )


def _require_scope(method: str, resource: Any, principal: Principal) -> None:
    """Raise unless the principal holds the scope the resource declares for this method.

    Raises:
        Problem: 403 `forbidden`, the scope is missing (`error="insufficient_scope"`).
        RuntimeError: the resource serves the method but declares no scope (a bug).
    """
    needed = getattr(resource, "scopes", {}).get(method)
    if needed is None:
        responder = f"on_{method.lower()}"
        if any(name == responder or name.startswith(responder + "_") for name in dir(resource)):
            raise RuntimeError(f"{type(resource).__name__} declares no scope for {method}")
        return  # nothing serves this method: Falcon answers 405
    if needed not in principal.scopes:
        # RFC 6750 §3.1: a bearer credential short of a scope says which in the challenge.
        raise Problem(
            403,
            "forbidden",
            "Forbidden",
            f"This credential lacks the scope {needed}.",
            headers={
                "WWW-Authenticate": (
                    f'Bearer realm="hookline", error="insufficient_scope", scope="{needed}"'
                )
            },
        )


class RateLimit:
    """Counts each tenant request against its credential's and its tenant's budget.

    A resource lists in `ingest_methods` the methods that spend the ingest
    budget; every other tenant request spends the management budget. The
    `limiter` (`engine.tenancy.limiter`) decides requests from its leases on
    the event loop, and refills them on a thread of its own before they run
    dry; only a request that finds a lease empty anyway (a bucket's first, say,
    or one whose refill failed) goes to the offload's threads. Each counted
    answer carries `RateLimit-Limit`, `RateLimit-Remaining` (what this process
    knows is left in the cluster) and `RateLimit-Reset`; a refusal is a 429
    with `Retry-After` as well.
    """

    def __init__(
        self,
        limiter: Limiter,
        clock: Callable[[], float] = time.time,
        offload: Offload | None = None,
    ) -> None:
        self.limiter = limiter
        self.clock = clock
        self.offload = offload

    async def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        """Spend one hit for the request, before its body is read."""
        await self.spend(req, resource, 1)

    async def spend(self, req: falcon.Request, resource: Any, hits: int) -> None:
        """Spend `hits` of the request's budget; 429 when it is spent.

        Every request spends one here before its body is read. A request
        that carries several events (`POST /v1/events/batch`) costs one hit
        per event, a count known only once its body is parsed: its resource
        spends the rest through this method (handed to it by `api.app`), so
        a batch past the remaining budget is refused whole. Decided from the
        leases here; on the offload's threads when that needs the database.

        Raises:
            Problem: 429, with `Retry-After` and the `RateLimit-*` headers.
        """
        principal = getattr(req.context, "principal", None)
        if principal is None or hits < 1:
            return
        budget = self._budget(req, resource)
        now = self.clock()
        buckets = self.limiter.buckets(principal, budget)
        decision = self.limiter.try_consume(buckets, now, hits)
        if isinstance(decision, Deferred):
            # No connection held while it waits for a lease in flight: it leases on one of
            # its own only if it must (`engine.tenancy.lease`).
            decision = await _blocking(
                self.offload, self.limiter.consume, buckets, now, hits, uses_database=False
            )
        if decision is None:
            return
        req.context.rate_limit = decision
        if not decision.allowed:
            raise Problem(
                429,
                "rate-limited",
                "Too many requests",
                f"The {budget} rate limit of {decision.limit} requests per second is spent; "
                f"retry in {decision.reset_s} s.",
                headers={**_rate_headers(decision), "Retry-After": str(decision.reset_s)},
            )

    async def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        decision = getattr(req.context, "rate_limit", None)
        if decision is not None:
            resp.set_headers(_rate_headers(decision))

    @staticmethod
    def _budget(req: falcon.Request, resource: Any) -> str:
        ingest = req.method in getattr(resource, "ingest_methods", ())
        return ratelimit.INGEST if ingest else ratelimit.MANAGEMENT


async def _blocking(
    offload: Offload | None, fn: Callable[..., T], *args: Any, uses_database: bool = True
) -> T:
    """`fn(*args)` on the offload's threads (connected unless told not), or here without one."""
    if offload is None:
        return fn(*args)
    return await offload.run(fn, *args, uses_database=uses_database)


def _rate_headers(decision: ratelimit.Decision) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_s),
    }


def _bearer(req: falcon.Request) -> str:
    header = req.get_header("Authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Send `Authorization: Bearer <api key>`.")
    return token.strip()


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "unauthorized",
        "Unauthorized",
        detail,
        field="Authorization",
        headers={"WWW-Authenticate": 'Bearer realm="hookline"'},
    )

"""The HTTP side of one attempt: POST, read a capped answer, return an outcome.

`DeliveryClient.send` never raises for anything the endpoint or the network
does; every failure comes back as an `Outcome` with an `error_class`:

    http_status       the endpoint answered, but not 2xx (3xx included: no redirects)
    timeout           connect timeout, or no full answer within the request timeout
                      (which counts any wait for one of the host's connections)
    dns               the host name did not resolve
    tls               the TLS handshake or certificate failed; with a client certificate,
                      also a connection cut right after the handshake (TLS 1.3 refuses
                      a client certificate so)
    refused_address   the SSRF guard refused the address before connecting
    invalid_url       the URL cannot be requested
    connection        refused, reset, closed early, or any other transport error
    auth_error        the receiver's OAuth2 token server gave no token (endpoint `auth`)

The deliver actor adds two classes of its own, for attempts that make no request:
`secret_unavailable`, when the endpoint's secret does not decrypt with the
configured keys, and `transform_error`, when the endpoint's transform gives
no body that can be sent (`engine.endpoints.transforms`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from engine.deliveries import slots
from engine.deliveries.hostgate import HostGates, host_key
from engine.deliveries.receiver_tokens import ReceiverAuthError, ReceiverTokens, TlsContexts
from engine.endpoints.receiver_auth import ClientTls, OAuth2Grant
from engine.retry import parse_retry_after
from engine.ssrf import AddressPolicy, check_url, guarded_socket_factory, refusal_in


@dataclass(frozen=True)
class Request:
    """What to send to one endpoint."""

    url: str
    # The endpoint's custom headers in plaintext, and the signature: never in a repr.
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    # When its endpoint's rate lets it start (`engine.deliveries.slots`); None: at once.
    slot_at: dt.datetime | None = None
    # How late after `slot_at` it may still start (`slots.late_s`).
    slot_late_s: float = slots.LATE_S
    # An OAuth2 token to fetch from the receiver's server and send as a bearer token.
    grant: OAuth2Grant | None = None
    # A client certificate to present (mutual TLS), and the roots to trust.
    tls: ClientTls | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened on one attempt."""

    started_at: dt.datetime
    duration_ms: float
    status_code: int | None = None
    error_class: str | None = None
    error_detail: str | None = None
    response_body: str | None = None
    response_body_truncated: bool = False
    retry_after_s: float | None = None

    @property
    def success(self) -> bool:
        """True for a 2xx answer."""
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class ClientOptions:
    """Limits for every attempt a client makes."""

    connect_timeout_s: float = 5.0
    request_timeout_s: float = 15.0
    max_response_bytes: int = 64 * 1024
    max_connections: int = 100
    max_connections_per_host: int = 16
    policy: AddressPolicy = field(default_factory=AddressPolicy)


def open_session(options: ClientOptions) -> aiohttp.ClientSession:
    """One pooled session for a whole process; call it on the running event loop."""
    connector = aiohttp.TCPConnector(
        limit=options.max_connections,
        limit_per_host=options.max_connections_per_host,
        ttl_dns_cache=30,
        socket_factory=guarded_socket_factory(options.policy),
    )
    # The request timeout is the client's (`DeliveryClient.send`): it also covers the
    # wait for a connection, in its own per-host queue.
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=options.connect_timeout_s,
        sock_connect=options.connect_timeout_s,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        trust_env=False,
        auto_decompress=True,
        cookie_jar=aiohttp.DummyCookieJar(),  # endpoints' cookies are never sent back
    )


class DeliveryClient:
    """Sends attempts over one shared session and describes what happened."""

    def __init__(self, session: aiohttp.ClientSession, options: ClientOptions) -> None:
        self.session = session
        self.options = options
        # At most the per-host limit at once, in arrival order (engine.deliveries.hostgate).
        self.gates = HostGates(options.max_connections_per_host)
        self.tokens = ReceiverTokens(session, options.policy, options.request_timeout_s)
        self.tls = TlsContexts()

    async def send(self, request: Request) -> Outcome:
        """POST the request once; never raises for network or HTTP failures."""
        started_at = _utcnow()
        clock = time.perf_counter()

        def outcome(**fields: object) -> Outcome:
            elapsed = (time.perf_counter() - clock) * 1000.0
            detail = fields.get("error_detail")
            if isinstance(detail, str) and "\x00" in detail:
                fields["error_detail"] = storable(detail)
            return Outcome(started_at=started_at, duration_ms=elapsed, **fields)  # type: ignore[arg-type]

        refusal = check_url(request.url, self.options.policy)
        if refusal is not None:
            return outcome(error_class="refused_address", error_detail=refusal)
        key = host_key(request.url)
        total = self.options.request_timeout_s
        if request.slot_at is not None:
            await asyncio.sleep(slots.wait_s(request.slot_at, _utcnow()))
        try:
            async with asyncio.timeout(total):
                # A slotted request goes first: its host's queue must not make it miss its slot.
                await self.gates.acquire(key, first=request.slot_at is not None)
                try:
                    if request.slot_at is not None:
                        late = slots.missed(request.slot_at, _utcnow(), request.slot_late_s)
                        if late is not None:
                            return missed_slot(late)
                        started_at, clock = _utcnow(), time.perf_counter()
                    return await self._post(request, outcome, started_at)
                finally:
                    self.gates.release(key)
        except ReceiverAuthError as exc:
            return outcome(error_class="auth_error", error_detail=str(exc))
        except TimeoutError as exc:
            if str(exc):  # the connector's connect timeout, which names the host
                return outcome(error_class="timeout", error_detail=classify(exc)[1])
            return outcome(error_class="timeout", error_detail=f"no answer within {total:g} s")
        except Exception as exc:  # noqa: BLE001 - every failure becomes an outcome value
            error_class, detail = classify(exc)
            if error_class == "connection" and request.tls is not None:
                # TLS 1.3 refuses a client certificate after the handshake: the first write
                # or read then fails without an SSL error of its own.
                error_class = "tls"
                detail += " (cut after the TLS handshake: the client certificate refused?)"
            return outcome(error_class=error_class, error_detail=detail)

    async def _post(
        self, request: Request, outcome: Callable[..., Outcome], started_at: dt.datetime
    ) -> Outcome:
        """POST with the endpoint's credentials; an OAuth2 token refused (401) is fetched
        anew and the request sent once more."""
        context = self.tls.context(request.tls) if request.tls is not None else None
        if request.grant is None:
            return await self._post_once(request, request.headers, context, outcome, started_at)
        token = await self.tokens.token(request.grant)
        headers = {**request.headers, "authorization": f"Bearer {token}"}
        answered = await self._post_once(request, headers, context, outcome, started_at)
        if answered.status_code != 401:
            return answered
        token = await self.tokens.token(request.grant, fresh=True)
        headers["authorization"] = f"Bearer {token}"
        return await self._post_once(request, headers, context, outcome, started_at)

    async def _post_once(
        self,
        request: Request,
        headers: Mapping[str, str],
        context: ssl.SSLContext | None,
        outcome: Callable[..., Outcome],
        started_at: dt.datetime,
    ) -> Outcome:
        options: dict[str, Any] = {} if context is None else {"ssl": context}
        async with self.session.post(
            request.url, data=request.body, headers=dict(headers), allow_redirects=False, **options
        ) as response:
            body, truncated = await self._read_capped(response)
            retry_after = None
            if response.status in (429, 503):
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), now=started_at.replace(tzinfo=dt.UTC)
                )
            failed = not 200 <= response.status < 300
            return outcome(
                status_code=response.status,
                error_class="http_status" if failed else None,
                error_detail=f"HTTP {response.status} {response.reason or ''}".strip()
                if failed
                else None,
                response_body=body,
                response_body_truncated=truncated,
                retry_after_s=retry_after,
            )

    async def _read_capped(self, response: aiohttp.ClientResponse) -> tuple[str, bool]:
        limit = self.options.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = await response.content.read(limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        truncated = size >= limit and not response.content.at_eof()
        return storable(b"".join(chunks).decode("utf-8", errors="replace")), truncated


def missed_slot(late_s: float) -> Outcome:
    """What a request stands for that could not start in time for its slot: no
    attempt; its delivery waits for a new slot (`engine.deliveries.flow.give_back`)."""
    return Outcome(
        _utcnow(), 0.0, error_class=slots.MISSED, error_detail=f"{late_s:.3f} s after its slot"
    )


def _utcnow() -> dt.datetime:
    """Now, as the naive UTC datetime the tables store."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def storable(text: str) -> str:
    """`text` with each NUL replaced by U+FFFD: PostgreSQL's text cannot hold NUL.

    What an endpoint answers is stored with its attempt; one NUL in a body made
    the whole recording group fail, and every attempt in it was sent again.
    """
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def classify(exc: BaseException) -> tuple[str, str]:
    """Name the class of a transport failure and describe it in one line."""
    detail = f"{type(exc).__name__}: {exc}".strip()
    refusal = refusal_in(exc)
    if refusal is not None:
        return "refused_address", refusal
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout", detail or "timed out"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns", detail
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return "tls", detail
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return "invalid_url", detail
    return "connection", detail

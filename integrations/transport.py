"""Sending one signed result to a callback URL: one attempt, one outcome.

The transport knows nothing about retries; it reports whether a retry can
help (`DeliveryFailed.permanent`), the way healthchecks' transports do:
connection errors, timeouts, 5xx, 408 and 429 are worth retrying; other 4xx,
redirects (never followed) and refused addresses are not.

The SSRF guard (ssrf.vet) runs here, right before connecting, and the request
is sent to a vetted IP address, not to the host name, so a DNS answer that
changes after the check cannot redirect it: the Host header and, for HTTPS,
the TLS server name (SNI, also used for certificate verification) carry the
original host.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from integrations import ssrf

RETRYABLE_STATUSES = frozenset({408, 429})
EXCERPT_CHARS = 500
# A receiver's answer is read only this far: its status is what counts.
MAX_READ_BYTES = 4096
USER_AGENT = "Combo-Webhooks/1.0"


@dataclass(frozen=True)
class Delivered:
    status_code: int
    latency_ms: int
    response_excerpt: str
    address: str


class DeliveryFailed(Exception):
    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        status_code: int | None = None,
        latency_ms: int | None = None,
        response_excerpt: str = "",
        retry_after: float | None = None,
        address: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status_code = status_code
        self.latency_ms = latency_ms
        self.response_excerpt = response_excerpt
        self.retry_after = retry_after
        self.address = address


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the receiver asks to wait: `Retry-After` as delay-seconds or as an HTTP date (RFC 9110)."""
    raw = response.headers.get("Retry-After", "").strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as HTTP dates are
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _excerpt(response: httpx.Response, deadline: float) -> str:
    """The start of the answer, read without ever loading more than a few KB of it, nor past `deadline`
    (time.monotonic()): the timeout bounds each read, so a receiver trickling its answer a byte at a
    time would otherwise hold the worker for hours."""
    raw = bytearray()
    try:
        for chunk in response.iter_raw():
            raw.extend(chunk)
            if len(raw) >= MAX_READ_BYTES or time.monotonic() >= deadline:
                break
    except httpx.HTTPError:
        pass  # what arrived before the error is still worth showing
    text = bytes(raw[:MAX_READ_BYTES]).decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    # NUL is replaced like undecodable bytes: PostgreSQL cannot store it in text.
    return text.replace("\x00", "\ufffd")


class _Cutoff:
    """Ends an attempt's connection once its time is up.

    httpx's timeouts bound each read, not the answer as a whole, so a receiver
    that trickles its status line and headers a byte at a time would hold the
    worker for hours. A timer shuts the socket down (which wakes a blocked
    read); the socket is learned from httpcore's `trace` extension.
    """

    def __init__(self, seconds: float):
        self.fired = False
        self._stream = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True

    def trace(self, event: str, info: dict) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            with self._lock:
                self._stream = info.get("return_value")  # TCP, then the TLS stream over it
                if self.fired:
                    self._shutdown()

    def _cut(self) -> None:
        with self._lock:
            self.fired = True
            self._shutdown()

    def _shutdown(self) -> None:
        sock = self._stream.get_extra_info("socket") if self._stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Cutoff:
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()


class CallbackTransport:
    """POST a body to a callback URL over a vetted address."""

    def __init__(self, *, timeout: float):
        self.timeout = timeout

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Delivered:
        try:
            target = ssrf.vet(url)
        except ssrf.CallbackRefused as exc:
            raise DeliveryFailed(exc.message, permanent=True) from None
        except ssrf.CallbackUnresolvable as exc:
            raise DeliveryFailed(str(exc), permanent=False) from None

        default_port = 443 if target.scheme == "https" else 80
        is_name = not ssrf.is_ip_literal(target.host)
        # An internationalised name goes on the wire in its xn-- form (headers are ASCII).
        wire_host = ssrf.ascii_host(target.host) if is_name else target.host
        shown = f"[{wire_host}]" if ":" in wire_host else wire_host
        host_header = shown if target.port == default_port else f"{shown}:{target.port}"
        # identity: the answer's first bytes are shown as they come, never decompressed.
        send_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers, "Host": host_header}
        # TLS: the certificate is checked against the name, though the socket goes to the address.
        extensions = {"sni_hostname": wire_host} if target.scheme == "https" and is_name else {}

        last: DeliveryFailed | None = None
        # trust_env=False: no proxy from the environment, so the vetted address is the one connected to.
        with httpx.Client(timeout=self.timeout, follow_redirects=False, trust_env=False) as client:
            for address in target.addresses:
                started = time.monotonic()
                with _Cutoff(self.timeout) as cutoff:
                    request = client.build_request(
                        "POST", httpx.URL(url).copy_with(host=str(address)), content=body, headers=send_headers,
                        extensions={**extensions, "trace": cutoff.trace},
                    )
                    try:
                        response = client.send(request, stream=True)
                    except httpx.ConnectError as exc:
                        # The next address of the same host may answer.
                        last = DeliveryFailed(
                            f"Could not connect: {exc}", permanent=False,
                            latency_ms=int((time.monotonic() - started) * 1000), address=str(address),
                        )
                        continue
                    except httpx.HTTPError as exc:
                        if cutoff.fired or isinstance(exc, httpx.TimeoutException):
                            message = f"No answer within {self.timeout:g} seconds."
                        else:
                            message = f"The connection failed: {type(exc).__name__}: {exc}"
                        raise DeliveryFailed(
                            message, permanent=False,
                            latency_ms=int((time.monotonic() - started) * 1000), address=str(address),
                        ) from None
                    try:
                        latency_ms = int((time.monotonic() - started) * 1000)  # to the response headers
                        return self._outcome(response, latency_ms, str(address), deadline=started + self.timeout)
                    finally:
                        response.close()
        assert last is not None
        raise last

    def _outcome(self, response: httpx.Response, latency_ms: int, address: str, *, deadline: float) -> Delivered:
        status = response.status_code
        excerpt = _excerpt(response, deadline)
        if 200 <= status < 300:
            return Delivered(status_code=status, latency_ms=latency_ms, response_excerpt=excerpt, address=address)
        common = dict(status_code=status, latency_ms=latency_ms, response_excerpt=excerpt, address=address)
        if status >= 500 or status in RETRYABLE_STATUSES:
            raise DeliveryFailed(
                f"The receiver answered {status}.", permanent=False, retry_after=_retry_after(response), **common
            )
        if 300 <= status < 400:
            raise DeliveryFailed(f"The receiver answered {status}; redirects are not followed.", permanent=True, **common)
        raise DeliveryFailed(f"The receiver answered {status}.", permanent=True, **common)

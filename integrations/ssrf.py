"""Which callback URLs Combo may send to: the SSRF guard.

A callback URL is chosen by a user, but the request comes from Combo's
network, which can reach things the user cannot: the loopback interface,
private networks, cloud metadata services. So a host is resolved and every
address it resolves to is vetted; the delivery then connects to a vetted
address (transport.py), so a DNS answer that changes between the check and
the connection (DNS rebinding) cannot slip through.

Refused unless allowlisted: loopback, private (RFC 1918, ULA), link-local,
shared (CGNAT), reserved, multicast, unspecified, documentation and any other
non-global address, IPv4 embedded in IPv6 (mapped, NAT64) that is one of
those, and the cloud metadata addresses. The operator allowlist
COMBO_WEBHOOK_ALLOWED_HOSTS names hosts (exact, case-insensitive) or CIDRs.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna
from django.conf import settings

from combo.errors import ComboError, ErrorCode

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services (AWS, GCP, Azure, OpenStack share 169.254.169.254;
# AWS's IPv6 endpoint; Alibaba Cloud). Most are also non-global; listed so the
# refusal names them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

ALLOWED_SCHEMES = ("http", "https")
MAX_URL_CHARS = 2000


class CallbackRefused(ComboError):
    """The callback URL may not be used; the message says why (never a secret)."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.CALLBACK_URL_REFUSED, message, errors={"callback_url": [message]})


class CallbackUnresolvable(Exception):
    """The host name did not resolve (may be temporary)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL, lower-cased, without brackets
    port: int
    addresses: tuple[IPAddress, ...]  # vetted, in resolver order


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL shape; ValueError says what is wrong."""
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"The URL is longer than {MAX_URL_CHARS} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("This is not a valid URL.") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise ValueError("The URL must start with http:// or https://.")
    if not parts.hostname:
        raise ValueError("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise ValueError("Credentials in the URL are not accepted; receivers verify X-Combo-Signature instead.")
    if parts.fragment:
        raise ValueError("The URL must not have a #fragment.")
    scheme = parts.scheme.lower()
    host = parts.hostname.lower().rstrip(".")
    if not is_ip_literal(host) and not _is_host_name(host):
        raise ValueError("The URL's host is not a valid host name (labels of 1-63 letters, digits or hyphens, "
                         "253 characters in all).")
    return scheme, host, port or (443 if scheme == "https" else 80)


# One DNS label as resolvers take it (underscores too, which some names carry).
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def ascii_host(host: str) -> str:
    """A host name as it goes on the wire (Host header, TLS server name): an internationalised name
    in its IDNA (xn--) form, encoded as the HTTP client encodes it. ValueError if it cannot be."""
    if host.isascii():
        return host
    try:
        return idna.encode(host.lower()).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"{host!r} is not a valid internationalised host name") from exc


def _is_host_name(host: str) -> bool:
    """A name DNS can hold: IDNA-encodable, every label 1-63 characters, 253 in all."""
    try:
        wire_host = ascii_host(host)
    except ValueError:  # an empty or over-long label, or characters no name may have
        return False
    return len(wire_host) <= 253 and all(_LABEL.fullmatch(label) for label in wire_host.split("."))


def _allowlist() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    hosts: set[str] = set()
    networks = []
    for entry in settings.COMBO_WEBHOOK_ALLOWED_HOSTS:
        entry = entry.strip().lower().strip("[]")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry.rstrip("."))
    return hosts, networks


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def refusal_reason(address: IPAddress) -> str | None:
    """Why `address` may not be a callback target, or None if it may."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = refusal_reason(embedded)
            return f"{reason} (embedded in IPv6)" if reason else None
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "a non-public address"
    return None


def _resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise CallbackUnresolvable(f"The host {host!r} could not be resolved.") from exc
    seen: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    if not seen:
        raise CallbackUnresolvable(f"The host {host!r} resolved to no address.")
    return tuple(seen)


def vet(url: str) -> Target:
    """Resolve the URL's host and vet every address; CallbackRefused or CallbackUnresolvable if not usable.

    Every address must pass, not just one: the connection may use any of them.
    """
    try:
        scheme, host, port = parse_url(url)
    except ValueError as exc:
        raise CallbackRefused(str(exc)) from None
    allowed_hosts, allowed_networks = _allowlist()
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    # A name is looked up as it is sent (its xn-- form), so the address vetted is the one it names.
    addresses = (literal,) if literal is not None else _resolve(ascii_host(host), port)
    if host in allowed_hosts:
        return Target(scheme, host, port, addresses)
    for address in addresses:
        if any(address in network for network in allowed_networks):
            continue
        reason = refusal_reason(address)
        if reason:
            shown = host if literal is not None else f"{host} ({address})"
            raise CallbackRefused(
                f"Callback URLs may not point to {reason}: {shown}. "
                "An operator can allow on-premises targets with COMBO_WEBHOOK_ALLOWED_HOSTS."
            )
    return Target(scheme, host, port, addresses)


def check_callback_url(url: str) -> None:
    """The save-time check: refuse what is certainly refused.

    A host that does not resolve now is accepted (it may exist where Combo
    runs later); the send-time check in the delivery is the real guard.
    """
    try:
        vet(url)
    except CallbackUnresolvable:
        return

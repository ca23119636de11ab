"""Which addresses a webhook may be sent to: public ones only, unless the deployment allows
private ones (READINESS_WEBHOOK_ALLOW_PRIVATE). Checked when a subscription is made and again
before every attempt, since a name may resolve elsewhere by then."""

import ipaddress
import socket
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services. Most sit in ranges refused anyway (169.254.169.254 is link-local,
# fd00:ec2::254 private); Azure's wire server and Alibaba's are named here.
METADATA = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "168.63.129.16",
    )
)


class UnsafeAddress(ValueError):
    """The URL's host is, or resolves to, an address webhooks are not sent to."""


def refusal(address: IPAddress) -> str | None:
    """Why `address` is refused, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA:
        return "a cloud metadata address"
    for kind, refused in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not globally reachable", not address.is_global),
    ):
        if refused:
            return f"a {kind} address"
    return None


@dataclass(frozen=True)
class Resolved:
    host: str
    addresses: list[IPAddress]


def resolve(host: str, port: int) -> Resolved:
    """Every address `host` resolves to; UnsafeAddress when it does not resolve."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return Resolved(host, [literal])
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise UnsafeAddress(f"the host {host!r} does not resolve") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return Resolved(host, addresses)


def public_addresses(host: str, port: int) -> list[IPAddress]:
    """The addresses of `host`, all of them public; UnsafeAddress names the first that is not.
    All must be: a client may connect to any of them."""
    resolved = resolve(host, port)
    for address in resolved.addresses:
        reason = refusal(address)
        if reason is not None:
            raise UnsafeAddress(f"the host {host!r} resolves to {address}, {reason}")
    if not resolved.addresses:
        raise UnsafeAddress(f"the host {host!r} does not resolve")
    return resolved.addresses

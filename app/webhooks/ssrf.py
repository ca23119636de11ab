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


# IPv6 ranges whose addresses carry an IPv4 address a packet ends up at (RFC 3056, 6052,
# 8215, 4380, 4291): a name may resolve to `2002:7f00:1::` to reach 127.0.0.1 through a
# 6to4 relay, or a NAT64 gateway may translate `64:ff9b::a00:1` to 10.0.0.1. Such an address
# is judged by the IPv4 addresses it embeds.
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
TEREDO = ipaddress.IPv6Network("2001::/32")
IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# Of those, the ranges whose addresses are taken once every embedded address is public:
# 6to4, the well-known NAT64 prefix, Teredo and IPv4-mapped are how an IPv6 path reaches a
# public IPv4 host. The local-use NAT64 prefix is translated by an operator's own gateway,
# anywhere it likes, and IPv4-compatible addresses are deprecated: those stay refused.
_JUDGED_BY_EMBEDDED = (SIX_TO_FOUR, NAT64, TEREDO, IPV4_MAPPED)


def _low32(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address of a translation or tunnelling range carries."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    if address in IPV4_MAPPED:
        return [_low32(address)]
    if address in SIX_TO_FOUR:
        return [ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)]
    if address in TEREDO:
        # Bits 32..63 are the Teredo server; the last 32, inverted, the client behind its NAT,
        # where the relay sends the packet.
        server = ipaddress.IPv4Address((int(address) >> 64) & 0xFFFFFFFF)
        client = ipaddress.IPv4Address(~int(address) & 0xFFFFFFFF)
        return [server, client]
    if address in NAT64:
        return [_low32(address)]
    if address in NAT64_LOCAL:
        # RFC 6052 places the IPv4 address of a /48 prefix in bits 48..63 and 72..87; an
        # operator may also use a /96 inside it. Either reading counts.
        value = int(address)
        split = ((value >> 64) & 0xFFFF) << 16 | (value >> 40) & 0xFFFF
        readings = [reading for reading in (value & 0xFFFFFFFF, split) if reading]
        return [ipaddress.IPv4Address(reading) for reading in readings or [0]]
    if address in IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are IPv6's own
        return [_low32(address)]
    return []


def _own_refusal(address: IPAddress) -> str | None:
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


def refusal(address: IPAddress) -> str | None:
    """Why `address` is refused, or None for a public address. One that embeds an IPv4
    address is refused when that address would be, whatever its IPv6 range."""
    embedded = embedded_ipv4(address)
    for inner in embedded:
        reason = _own_refusal(inner)
        if reason is not None:
            return f"{reason} ({inner}, embedded)"
    if embedded and any(address in network for network in _JUDGED_BY_EMBEDDED):
        return None
    return _own_refusal(address)


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

"""The image-URL allowlist and the address policy (`dataplane/image_urls.py` fetches under them; `settings` checks the
allowlist's entries at start-up). Nothing here does I/O."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public_address(address: IPAddress) -> bool:
    """A global unicast address, with any IPv4 address embedded in it global too."""
    embedded: list[IPAddress] = []
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            embedded.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            embedded.append(address.sixtofour)
        if address.teredo is not None:
            embedded.extend(address.teredo)
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return all(candidate.is_global and not candidate.is_multicast for candidate in (address, *embedded))


@dataclass(frozen=True)
class AllowEntry:
    """One allowlist entry: a host (`suffix` False), ``*.domain`` (`suffix` True), or a URL prefix."""

    host: str
    suffix: bool = False
    scheme: str | None = None
    port: int | None = None
    path: str = ""

    @classmethod
    def parse(cls, text: str) -> AllowEntry:
        text = text.strip()
        if "://" in text:
            parts = urlsplit(text)
            if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
                raise ValueError(f"image URL allowlist entry {text!r}: a prefix is scheme://host[:port][/path]")
            return cls(host_of(parts.hostname), scheme=parts.scheme.lower(),
                       port=parts.port or DEFAULT_PORTS.get(parts.scheme.lower()), path=parts.path or "/")
        if text.startswith("*."):
            return cls(_idna(text[2:]), suffix=True)
        if ip_literal(text) is not None:
            return cls(host_of(text))
        if not text or "/" in text or ":" in text:
            raise ValueError(f"image URL allowlist entry {text!r}: a host, *.domain or a URL prefix")
        return cls(_idna(text))

    def allows(self, scheme: str, host: str, port: int, path: str) -> bool:
        if self.suffix:
            return host.endswith("." + self.host)
        if host != self.host:
            return False
        if self.scheme is None:
            return True
        return scheme == self.scheme and port == self.port and _under(path, self.path)


def _under(path: str, prefix: str) -> bool:
    """`path` is `prefix` or below it (a prefix ``/public`` does not allow ``/publicity``)."""
    return path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/")


def ip_literal(host: str) -> IPAddress | None:
    """`host` as an IP address when it is one, in the standard notation only (Python refuses the octal, hex and
    short forms that C resolvers accept: those go to the resolver, whose answer is checked like any other)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def host_of(host: str) -> str:
    """A URL's host, normalised: an IP literal in its compressed form, a name in lower-case IDNA."""
    literal = ip_literal(host)
    if literal is not None:
        return literal.compressed
    name = _idna(host)
    if ip_literal(name) is not None:  # e.g. fullwidth digits, which IDNA maps to an address
        raise ValueError(f"{host!r} is an IP address in another notation")
    return name


def _idna(host: str) -> str:
    try:
        return host.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{host!r} is not a valid host name") from None

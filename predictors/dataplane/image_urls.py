"""Images by URL: the server fetches an image a request names instead of carrying (docs/protocol.md, "Images by URL").

Off unless `image_url_allow` lists hosts or URL prefixes. Every URL, and every redirect target, must then pass
the same checks, each one before anything is sent:

1. the URL: ``https`` (``http`` only with `image_url_allow_http`), no user info, a host (no IP literal tricks
   pass the allowlist unless written there as such), on the allowlist (a host, ``*.domain`` for its subdomains,
   or a URL prefix: scheme, host, port and a path prefix);
2. the addresses its host resolves to: every one must be a public unicast address (`is_public_address`:
   loopback, private, link-local (the cloud metadata address 169.254.169.254), shared, reserved, multicast and
   unspecified ranges are refused, also when embedded in IPv4-mapped, 6to4, Teredo or NAT64 IPv6 addresses),
   unless `image_url_allow_networks` names its network;
3. the connection goes to the address that was checked (the URL's host travels in the Host header and TLS SNI,
   and the certificate is verified for it), so a second DNS answer cannot redirect it (no rebinding window).

The fetch as a whole has `image_url_timeout_seconds` (slow senders included), at most `image_url_max_redirects`
redirects and `image_url_max_bytes` of body (read raw: no decompression); no proxy from the environment is used.
What arrives goes through the same image checks as an upload. Errors: 400 IMAGE_URL_REFUSED (the policy), 413
IMAGE_URL_TOO_LARGE, 502 IMAGE_URL_FAILED (could not be fetched: DNS, connection, TLS, status, time).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from predictors.codecs.types import ImageURL, WireRequest
from predictors.errors import ImageURLFailed, ImageURLRefused, ImageURLTooLarge
from predictors.settings import Settings
from predictors.url_policy import (
    DEFAULT_PORTS,
    AllowEntry,
    IPAddress,
    Network,
    host_of,
    ip_literal,
    is_public_address,
)

logger = logging.getLogger(__name__)

#: resolves (host, port) to addresses; `system_resolver` by default, a table in tests
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: concurrent fetches of one request
MAX_PARALLEL_FETCHES = 4


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


@dataclass(frozen=True)
class _Target:
    url: str
    scheme: str
    host: str
    port: int
    path_and_query: str


class ImageFetcher:
    """Resolves a request's `ImageURL`s into image bytes, under the policy of the module docstring."""

    def __init__(self, settings: Settings | None = None, resolver: Resolver = system_resolver) -> None:
        """`settings` None: images by URL are off (every URL is refused)."""
        self.allow = [AllowEntry.parse(entry) for entry in settings.image_url_allow] if settings else []
        self.allow_http = bool(settings and settings.image_url_allow_http)
        self.networks: list[Network] = [ipaddress.ip_network(network, strict=False)
                                        for network in (settings.image_url_allow_networks if settings else ())]
        self.max_bytes = settings.image_url_max_bytes if settings else 0
        self.timeout = settings.image_url_timeout_seconds if settings else 0.0
        self.max_redirects = settings.image_url_max_redirects if settings else 0
        self.resolver = resolver
        # the system's trust store (and SSL_CERT_FILE / SSL_CERT_DIR), as an operator configures it for the pod;
        # proxies from the environment are not used (they would connect to an address we did not check)
        self._tls = ssl.create_default_context()

    @property
    def enabled(self) -> bool:
        return bool(self.allow)

    async def resolve(self, wire: WireRequest) -> None:
        """Replace every `ImageURL` value of `wire`'s items by the image's bytes (fetched at most
        `MAX_PARALLEL_FETCHES` at a time)."""
        pending = [(item, name, value) for item in wire.items for name, value in item.items()
                   if isinstance(value, ImageURL)]
        if not pending:
            return
        if not self.enabled:
            raise ImageURLRefused("images by URL are off on this server (it needs --image-url-allow)")
        limit = asyncio.Semaphore(MAX_PARALLEL_FETCHES)

        async def one(url: str) -> bytes:
            async with limit:
                return await self.fetch(url)

        fetched = await asyncio.gather(*(one(value.url) for _, _, value in pending))
        for (item, name, _), data in zip(pending, fetched, strict=True):
            item[name] = data

    async def fetch(self, url: str) -> bytes:
        """The body of `url` after its redirects (each checked); raises the module docstring's errors."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._fetch(url)
        except TimeoutError:
            raise ImageURLFailed(f"the image at {_shown(url)} did not arrive within {self.timeout:g} s") from None

    async def _fetch(self, url: str) -> bytes:
        current = url
        async with httpx.AsyncClient(trust_env=False, follow_redirects=False, verify=self._tls,
                                     timeout=httpx.Timeout(self.timeout)) as client:
            for hop in range(self.max_redirects + 1):
                target = self._checked(current, redirected=hop > 0)
                address = await self._address(target)
                status, location, body = await self._get(client, target, address)
                if status in REDIRECTS:
                    if not location:
                        raise ImageURLFailed(f"{_shown(current)} answered {status} without a Location")
                    current = urljoin(current, location)
                    continue
                if status != 200:
                    raise ImageURLFailed(f"{_shown(current)} answered HTTP {status}, not 200 with an image")
                return body
        raise ImageURLRefused(f"{_shown(url)} redirects more than {self.max_redirects} times")

    def _checked(self, url: str, redirected: bool) -> _Target:
        what = "a redirect to " if redirected else ""
        if any(ord(c) < 0x21 or ord(c) == 0x7F or c == "\\" for c in url):
            raise ImageURLRefused(f"{what}{_shown(url)}: a URL may not hold spaces, control characters or "
                                  "backslashes")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ImageURLRefused(f"{what}{_shown(url)} is not a valid URL") from None
        scheme = parts.scheme.lower()
        allowed = ("https", "http") if self.allow_http else ("https",)
        if scheme not in allowed:
            raise ImageURLRefused(f"{what}{_shown(url)}: only {' and '.join(allowed)} URLs are fetched")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise ImageURLRefused(f"{what}{_shown(url)}: URLs with user info (user@host) are refused")
        if not parts.hostname:
            raise ImageURLRefused(f"{what}{_shown(url)} has no host")
        try:
            host = host_of(parts.hostname)
        except ValueError as error:
            raise ImageURLRefused(f"{what}{_shown(url)}: {error}") from None
        port = port or DEFAULT_PORTS[scheme]
        path = parts.path or "/"
        if _escapes_prefix(path):
            raise ImageURLRefused(f"{what}{_shown(url)}: a path with '.' or '..' segments or an encoded slash is "
                                  "refused (it could leave an allowed prefix on the server's side)")
        if not any(entry.allows(scheme, host, port, path) for entry in self.allow):
            raise ImageURLRefused(f"{what}{_shown(url)}: its host or path is not on this server's image URL "
                                  "allowlist")
        target_path = path + (f"?{parts.query}" if parts.query else "")
        return _Target(url, scheme, host, port, target_path)

    async def _address(self, target: _Target) -> IPAddress:
        """The address to connect to: every address the host resolves to must be allowed (an attacker's name
        with one public and one private address is refused), and the first one is used."""
        literal = ip_literal(target.host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = await self.resolver(target.host, target.port)
            except OSError as error:
                raise ImageURLFailed(f"{_shown(target.url)}: its host does not resolve ({error})") from None
        if not addresses:
            raise ImageURLFailed(f"{_shown(target.url)}: its host resolves to no address")
        for address in addresses:
            if not (is_public_address(address) or any(address in network for network in self.networks)):
                raise ImageURLRefused(f"{_shown(target.url)}: its host resolves to {address}, a non-public address "
                                      "(loopback, private, link-local or reserved)")
        return addresses[0]

    async def _get(self, client: httpx.AsyncClient, target: _Target,
                   address: IPAddress) -> tuple[int, str | None, bytes]:
        netloc = f"[{address}]" if address.version == 6 else str(address)
        request = client.build_request(
            "GET", f"{target.scheme}://{netloc}:{target.port}{target.path_and_query}",
            headers={"Host": _host_header(target), "Accept": "image/*", "Accept-Encoding": "identity"},
            extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as error:
            raise ImageURLFailed(f"{_shown(target.url)} could not be fetched ({type(error).__name__}: {error})") \
                from None
        try:
            if response.status_code in REDIRECTS or response.status_code != 200:
                return response.status_code, response.headers.get("location"), b""
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise self._too_large(target, declared)
            chunks: list[bytes] = []
            received = 0
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received > self.max_bytes:
                    raise self._too_large(target, f"more than {received}")
                chunks.append(chunk)
            return 200, None, b"".join(chunks)
        except httpx.HTTPError as error:
            raise ImageURLFailed(f"{_shown(target.url)} could not be read ({type(error).__name__}: {error})") \
                from None
        finally:
            await response.aclose()

    def _too_large(self, target: _Target, size: str) -> ImageURLTooLarge:
        return ImageURLTooLarge(f"the image at {_shown(target.url)} is {size} bytes; the limit is {self.max_bytes}")


def _escapes_prefix(path: str) -> bool:
    lowered = path.lower()
    if any(encoded in lowered for encoded in ("%2f", "%5c", "%2e")):
        return True
    return any(segment in (".", "..") for segment in path.split("/"))


def _host_header(target: _Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return host if target.port == DEFAULT_PORTS[target.scheme] else f"{host}:{target.port}"


def _shown(url: str, limit: int = 120) -> str:
    """A URL for an error message: quoted, shortened."""
    return repr(url if len(url) <= limit else url[:limit] + "...")


def image_url_inputs(names: Sequence[str]) -> dict[str, str]:
    """The v2 input name that carries URLs for each image input: ``image`` -> ``image_url``."""
    return {f"{name}_url": name for name in names}

"""Images by URL: the fetcher against a loopback image server the tests allow explicitly, and every SSRF trick we
could think of. Names resolve through a table (a resolver the test gives) where a case needs a name to resolve to
a chosen address; the connection always goes to the address that was checked."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from predictors.codecs.images import check_image
from predictors.codecs.types import ImageURL, WireRequest
from predictors.dataplane.image_urls import ImageFetcher
from predictors.errors import ImageURLFailed, ImageURLRefused, ImageURLTooLarge, InvalidImage
from predictors.settings import ImageLimits, Settings
from predictors.url_policy import AllowEntry, is_public_address
from tests.support.image_server import ImageServer, image_server


@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    with image_server() as server:
        yield server


def fetcher(images: ImageServer, *extra_allow: str, resolver=None, **overrides) -> ImageFetcher:
    """The loopback server allowed explicitly: its URL prefix, plain http, and 127.0.0.1 alone of the private
    addresses."""
    settings = Settings(image_url_allow=(f"{images.base}/", *extra_allow), image_url_allow_http=True,
                        image_url_allow_networks=("127.0.0.1/32",), **overrides)
    return ImageFetcher(settings, resolver) if resolver else ImageFetcher(settings)


def table(answers: dict[str, list[str]]):
    """A resolver that answers from `answers` (name -> addresses), counting its calls."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list:
        calls.append(host)
        if host not in answers:
            raise OSError(f"unknown host {host}")
        return [ipaddress.ip_address(address) for address in answers[host]]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def fetch(fetcher: ImageFetcher, url: str) -> bytes:
    return asyncio.run(fetcher.fetch(url))


def test_an_allowed_url_is_fetched(images: ImageServer) -> None:
    data = fetch(fetcher(images), f"{images.base}/image.png")
    assert data == images.image
    check_image(data, ImageLimits())  # the same checks as an upload pass


def test_images_by_url_are_off_by_default(images: ImageServer) -> None:
    wire = WireRequest(items=[{"image": ImageURL(f"{images.base}/image.png")}])
    with pytest.raises(ImageURLRefused, match="off on this server"):
        asyncio.run(ImageFetcher().resolve(wire))
    with pytest.raises(ImageURLRefused, match="off on this server"):
        asyncio.run(ImageFetcher(Settings()).resolve(wire))


def test_resolve_replaces_every_url_by_its_bytes(images: ImageServer) -> None:
    wire = WireRequest(items=[{"image": ImageURL(f"{images.base}/image.png")}, {"image": b"inline"}])
    asyncio.run(fetcher(images).resolve(wire))
    assert wire.items == [{"image": images.image}, {"image": b"inline"}]


def test_https_only_unless_http_is_allowed(images: ImageServer) -> None:
    settings = Settings(image_url_allow=(f"{images.base}/",), image_url_allow_networks=("127.0.0.1/32",))
    with pytest.raises(ImageURLRefused, match="only https"):
        fetch(ImageFetcher(settings), f"{images.base}/image.png")


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "gopher://127.0.0.1:{port}/_GET%20/",
    "ftp://127.0.0.1:{port}/image.png",
    "data:image/png;base64,iVBORw0KGgo=",
    "javascript:alert(1)",
    "dict://127.0.0.1:{port}/",
    "ws://127.0.0.1:{port}/image.png",
    "//127.0.0.1:{port}/image.png",
    "127.0.0.1:{port}/image.png",
    "http:/127.0.0.1:{port}/image.png",
    "http:///image.png",
])
def test_scheme_tricks_are_refused(images: ImageServer, url: str) -> None:
    seen = len(images.paths)
    with pytest.raises(ImageURLRefused):
        fetch(fetcher(images), url.format(port=images.port))
    assert len(images.paths) == seen, "nothing may reach the server"


@pytest.mark.parametrize("host", [
    "2130706433",  # decimal 127.0.0.1
    "0177.0.0.1",  # octal
    "0x7f.0.0.1",  # hex
    "0x7f000001",
    "127.1",  # short form
    "127.0.0.2",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
    "0.0.0.0",
    "0",
    "localhost",
    "LOCALHOST",
    "localhost.",
    "169.254.169.254",  # cloud metadata
    "[fd00:ec2::254]",  # AWS metadata over IPv6
    "metadata.google.internal",
    "100.100.100.200",  # Alibaba metadata (shared address space)
    "10.0.0.1",
    "192.168.0.1",
    "[fe80::1]",
    "127.0.0.1.nip.io",
    "１２７.０.０.１",  # fullwidth digits
])
def test_other_local_addresses_are_not_on_the_allowlist(images: ImageServer, host: str) -> None:
    seen = len(images.paths)
    with pytest.raises(ImageURLRefused):
        fetch(fetcher(images), f"http://{host}:{images.port}/image.png")
    assert len(images.paths) == seen, "nothing may reach the server"


@pytest.mark.parametrize("url", [
    "http://user@127.0.0.1:{port}/image.png",
    "http://user:secret@127.0.0.1:{port}/image.png",
    "http://127.0.0.1:{port}@evil.example/image.png",
    "http://evil.example#@127.0.0.1:{port}/image.png",
    "http://evil.example\\@127.0.0.1:{port}/image.png",
    "http://127.0.0.1:{port} /image.png",
    "http://127.0.0.1:{port}/image.png\r\nX-Injected: 1",
    "http://127.0.0.1:99999/image.png",
    "http://127.0.0.1:{port}/public/../image.png",
])
def test_userinfo_and_malformed_urls_are_refused(images: ImageServer, url: str) -> None:
    with pytest.raises(ImageURLRefused):
        fetch(fetcher(images), url.format(port=images.port))


@pytest.mark.parametrize("addresses", [
    ["10.0.0.5"], ["172.16.0.1"], ["192.168.1.1"], ["169.254.169.254"], ["127.0.0.2"], ["0.0.0.0"],
    ["::1"], ["::ffff:127.0.0.1"], ["::ffff:169.254.169.254"], ["fd00:ec2::254"], ["fe80::1"],
    ["2002:7f00:1::1"],  # 6to4 around 127.0.0.1
    ["64:ff9b::a9fe:a9fe"],  # NAT64 around 169.254.169.254
    ["2001:0:4136:e378:8000:63bf:80ff:fffe"],  # Teredo around 127.0.0.1
    ["100.64.0.1"], ["224.0.0.1"], ["255.255.255.255"], ["198.18.0.1"],
    ["8.8.8.8", "10.0.0.1"],  # one public, one private: refused as a whole
    ["127.0.0.1", "::1"],  # only one of them is allowed
])
def test_an_allowed_name_that_resolves_to_a_non_public_address_is_refused(images: ImageServer,
                                                                          addresses: list[str]) -> None:
    resolver = table({"images.example": addresses})
    seen = len(images.paths)
    with pytest.raises(ImageURLRefused, match="non-public address"):
        fetch(fetcher(images, "images.example", resolver=resolver), f"http://images.example:{images.port}/image.png")
    assert len(images.paths) == seen


def test_the_real_resolver_refuses_localhost(images: ImageServer) -> None:
    settings = Settings(image_url_allow=("localhost",), image_url_allow_http=True)
    with pytest.raises(ImageURLRefused, match="non-public address"):
        fetch(ImageFetcher(settings), f"http://localhost:{images.port}/image.png")


def test_the_connection_goes_to_the_checked_address_not_a_second_answer(images: ImageServer) -> None:
    """DNS rebinding: the name answers 127.0.0.1 (allowed) first and a forbidden address afterwards; the fetch
    resolves once per hop and connects to the address it checked, with the name in the Host header."""
    answers = iter([["127.0.0.1"], ["10.0.0.1"], ["169.254.169.254"]])
    calls = []

    async def rebinding(host: str, port: int) -> list:
        calls.append(host)
        return [ipaddress.ip_address(a) for a in next(answers)]

    data = fetch(fetcher(images, "rebind.example", resolver=rebinding), f"http://rebind.example:{images.port}/image.png")
    assert data == images.image and calls == ["rebind.example"]
    assert images.hosts[-1] == f"rebind.example:{images.port}"


def test_redirects_are_followed_and_each_target_checked(images: ImageServer) -> None:
    ok = fetch(fetcher(images), f"{images.base}/redirect?to=/image.png&status=301")
    assert ok == images.image
    assert fetch(fetcher(images), f"{images.base}/redirect?to={images.base}/image.png&status=307") == images.image


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/",
    "http://localhost:{port}/image.png",
    "http://[::1]:{port}/image.png",
    "http://2130706433:{port}/image.png",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{port}/_x",
    "http://user@127.0.0.1:{port}/image.png",
    "https://evil.example/image.png",
])
def test_a_redirect_to_a_refused_target_is_refused(images: ImageServer, target: str) -> None:
    with pytest.raises(ImageURLRefused, match="a redirect to"):
        fetch(fetcher(images), f"{images.base}/redirect?to={target.format(port=images.port)}")


def test_a_redirect_to_an_allowed_name_resolving_to_a_private_address_is_refused(images: ImageServer) -> None:
    resolver = table({"rebind.example": ["10.1.2.3"]})
    with pytest.raises(ImageURLRefused, match="non-public address"):
        fetch(fetcher(images, "rebind.example", resolver=resolver),
              f"{images.base}/redirect?to=http://rebind.example:{images.port}/image.png")


def test_too_many_redirects(images: ImageServer) -> None:
    with pytest.raises(ImageURLRefused, match="redirects more than 3 times"):
        fetch(fetcher(images), f"{images.base}/loop")
    with pytest.raises(ImageURLRefused, match="redirects more than 0 times"):
        fetch(fetcher(images, image_url_max_redirects=0), f"{images.base}/redirect?to=/image.png")


def test_a_declared_huge_body_is_refused_before_it_is_read(images: ImageServer) -> None:
    started = time.monotonic()
    with pytest.raises(ImageURLTooLarge):
        fetch(fetcher(images, image_url_max_bytes=1 << 20), f"{images.base}/big")
    assert time.monotonic() - started < 2


def test_an_undeclared_huge_body_is_cut_at_the_limit(images: ImageServer) -> None:
    with pytest.raises(ImageURLTooLarge):
        fetch(fetcher(images, image_url_max_bytes=1 << 20), f"{images.base}/stream?bytes={8 << 20}")
    assert len(fetch(fetcher(images, image_url_max_bytes=1 << 20), f"{images.base}/stream?bytes=1000")) == 1000


def test_a_compressed_body_is_not_decompressed(images: ImageServer) -> None:
    """A gzip bomb: 64 MiB of zeros in ~64 KiB; it arrives as it was sent (and is then no image)."""
    data = fetch(fetcher(images, image_url_max_bytes=1 << 20), f"{images.base}/gzip?bytes={64 << 20}")
    assert len(data) < 1 << 20 and data[:2] == b"\x1f\x8b"
    with pytest.raises(InvalidImage):
        check_image(data, ImageLimits())


def test_a_slow_sender_runs_out_of_time(images: ImageServer) -> None:
    started = time.monotonic()
    with pytest.raises(ImageURLFailed, match="did not arrive within 1 s"):
        fetch(fetcher(images, image_url_timeout_seconds=1.0), f"{images.base}/slow?seconds=5")
    assert time.monotonic() - started < 2.5


def test_what_is_not_an_image_fails_the_image_checks(images: ImageServer) -> None:
    data = fetch(fetcher(images), f"{images.base}/text")
    with pytest.raises(InvalidImage):
        check_image(data, ImageLimits())


@pytest.mark.parametrize(("url", "message"), [
    ("{base}/missing", "HTTP 404"),
    ("http://127.0.0.1:1/image.png", "could not be fetched"),
    ("http://nowhere.example:{port}/image.png", "does not resolve"),
])
def test_fetch_failures(images: ImageServer, url: str, message: str) -> None:
    resolver = table({})
    with pytest.raises(ImageURLFailed, match=message):
        fetch(fetcher(images, "127.0.0.1", "nowhere.example", resolver=resolver),
              url.format(base=images.base, port=images.port))


def test_a_prefix_allows_only_what_is_under_it(images: ImageServer) -> None:
    settings = Settings(image_url_allow=(f"{images.base}/public",), image_url_allow_http=True,
                        image_url_allow_networks=("127.0.0.1/32",))
    prefixed = ImageFetcher(settings)
    assert fetch(prefixed, f"{images.base}/public/image.png") == images.image
    for path in ("/image.png", "/publicity/image.png", "/public/../image.png", "/public/%2e%2e/image.png",
                 "/public%2f..%2fimage.png", "/public/./image.png"):
        with pytest.raises(ImageURLRefused):
            fetch(prefixed, images.base + path)
    other_port = f"http://127.0.0.1:{images.port + 1}/public/image.png"
    with pytest.raises(ImageURLRefused):
        fetch(prefixed, other_port)


def test_https_to_an_address_that_speaks_no_tls_fails(images: ImageServer) -> None:
    resolver = table({"tls.example": ["127.0.0.1"]})
    settings = Settings(image_url_allow=("tls.example",), image_url_allow_networks=("127.0.0.1/32",))
    with pytest.raises(ImageURLFailed):
        fetch(ImageFetcher(settings, resolver), f"https://tls.example:{images.port}/image.png")


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (its own CA), and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_connects_to_the_checked_address_and_verifies_the_certificate_for_the_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection goes to the resolved, checked address (127.0.0.1) while TLS SNI and certificate verification
    use the URL's name: a certificate for that name (trusted through SSL_CERT_FILE, as an operator would add a
    CA) is accepted; one for another name, or one nobody trusts, is refused."""
    cert, key = _certificate(tmp_path, "tls.example")
    other_cert, other_key = _certificate(tmp_path, "other.example")
    settings = Settings(image_url_allow=("tls.example",), image_url_allow_networks=("127.0.0.1/32",))
    resolver = table({"tls.example": ["127.0.0.1"]})
    for server_cert, server_key, trusted, expected in ((cert, key, cert, "fetched"),
                                                      (other_cert, other_key, other_cert, "refused"),
                                                      (cert, key, other_cert, "refused")):
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(server_cert, server_key)
        monkeypatch.setenv("SSL_CERT_FILE", str(trusted))
        with image_server(tls) as secure:
            url = f"https://tls.example:{secure.port}/image.png"
            if expected == "fetched":
                assert fetch(ImageFetcher(settings, resolver), url) == secure.image
                assert secure.hosts[-1] == f"tls.example:{secure.port}"
            else:
                with pytest.raises(ImageURLFailed, match="could not be fetched"):
                    fetch(ImageFetcher(settings, resolver), url)


@pytest.mark.parametrize(("entry", "url", "allowed"), [
    ("images.example.com", "https://images.example.com/a.png", True),
    ("images.example.com", "https://evil.images.example.com/a.png", False),
    ("images.example.com", "https://images.example.com.evil.net/a.png", False),
    ("*.example.com", "https://cdn.example.com/a.png", True),
    ("*.example.com", "https://example.com/a.png", False),
    ("*.example.com", "https://evilexample.com/a.png", False),
    ("https://cdn.example.com/public/", "https://cdn.example.com/public/a.png", True),
    ("https://cdn.example.com/public/", "http://cdn.example.com/public/a.png", False),
    ("https://cdn.example.com/public/", "https://cdn.example.com:8443/public/a.png", False),
    ("https://cdn.example.com/public/", "https://cdn.example.com/a.png", False),
])
def test_allowlist_entries(entry: str, url: str, allowed: bool) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    assert AllowEntry.parse(entry).allows(parts.scheme, parts.hostname or "", parts.port or
                                          {"http": 80, "https": 443}[parts.scheme], parts.path) is allowed


@pytest.mark.parametrize("entry", ["", "a.com/x", "a.com:80", "https://user@a.com/", "https://a.com/?q=1"])
def test_malformed_allowlist_entries_stop_the_server(entry: str) -> None:
    with pytest.raises(ValueError):
        Settings(image_url_allow=(entry,))


@pytest.mark.parametrize(("address", "public"), [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True), ("1.1.1.1", True),
    ("127.0.0.1", False), ("10.0.0.1", False), ("169.254.169.254", False), ("::ffff:8.8.8.8", True),
    ("::ffff:10.0.0.1", False), ("64:ff9b::808:808", True), ("64:ff9b::a00:1", False), ("ff02::1", False),
])
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public

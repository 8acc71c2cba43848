"""The SSRF guard of /score's image URLs, against a real local HTTP server and real name resolution."""

from __future__ import annotations

import pytest

from modeling.fetch import FetchError, FetchLimits, check_url, fetch_url
from tests.modeling.conftest import IMAGE, IMAGE_SERVER_IP, serving_images

SERVER_IP = IMAGE_SERVER_IP


@pytest.fixture(scope="module")
def server():
    with serving_images() as url:
        yield url


ALLOW_TEST_SERVER = FetchLimits(allow_networks=[f"{SERVER_IP}/32"], timeout=5)


@pytest.mark.parametrize(
    "url,reason",
    [
        ("http://127.0.0.1/cat.png", "non-public"),
        ("http://10.1.2.3/cat.png", "non-public"),
        ("http://192.168.0.10/x.png", "non-public"),
        ("http://169.254.169.254/latest/meta-data/", "non-public"),
        ("http://[::1]/cat.png", "non-public"),
        ("http://[::ffff:127.0.0.1]/cat.png", "non-public"),
        ("http://[fd00:ec2::254]/", "non-public"),
        ("http://100.64.0.1/", "non-public"),
        ("http://0.0.0.0/", "non-public"),
        ("http://224.0.0.1/", "non-public"),
        # IPv6 forms that carry an IPv4 address: 6to4, Teredo, NAT64, IPv4-compatible.
        ("http://[2002:a9fe:a9fe::]/", "carries 169.254.169.254"),
        ("http://[2002:7f00:1::1]/", "carries 127.0.0.1"),
        ("http://[2001:0:a9fe:a9fe::1]/", "carries 169.254.169.254"),
        ("http://[64:ff9b::a9fe:a9fe]/", "non-public"),
        ("http://[64:ff9b:1::a00:1]/", "non-public"),
        ("http://[::a9fe:a9fe]/", "non-public"),
        # Other IANA special-purpose ranges.
        ("http://192.0.0.170/", "non-public"),
        ("http://192.0.2.1/", "non-public"),
        ("http://198.18.0.1/", "non-public"),
        ("http://192.88.99.1/", "non-public"),
        ("http://240.1.2.3/", "non-public"),
        ("http://[2001:db8::1]/", "non-public"),
        ("http://[3fff::1]/", "non-public"),
        ("http://[5f00::1]/", "non-public"),
        ("http://[100::1]/", "non-public"),
        ("http://[2001:4:112::1]/", "non-public"),
        ("http://[fec0::1]/", "non-public"),
        ("http://[ff02::1]/", "non-public"),
        ("http://localhost/cat.png", "non-public"),
        ("ftp://example.com/cat.png", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http:///nohost", "no host"),
        ("http://[not-an-ip/", "not a valid URL"),
    ],
)
def test_it_refuses_urls_that_lead_inside(url, reason):
    with pytest.raises(FetchError, match=reason):
        fetch_url(url, limits=FetchLimits())


def test_a_name_resolving_to_loopback_is_refused_even_with_public_addresses_beside_it():
    def resolver(host, port):
        return {"inside.example": ["127.0.0.1"], "mixed.example": ["93.184.215.14", "10.0.0.5"]}[host]

    with pytest.raises(FetchError, match="inside.example resolves to a non-public address"):
        check_url("http://inside.example/cat.png", limits=FetchLimits(), resolver=resolver)
    with pytest.raises(FetchError, match="10.0.0.5"):
        check_url("https://mixed.example/cat.png", limits=FetchLimits(), resolver=resolver)
    assert check_url("https://public.example/x.png", limits=FetchLimits(),
                     resolver=lambda h, p: ["93.184.215.14"]) == ("https", "public.example", 443, "93.184.215.14")


def test_the_explicitly_allowed_test_server_is_fetched(server):
    assert fetch_url(f"{server}/cat.png", limits=ALLOW_TEST_SERVER) == IMAGE
    assert fetch_url(f"{server}/to-cat", limits=ALLOW_TEST_SERVER) == IMAGE  # a redirect within the allowed net
    # Without the explicit setting the same server is refused.
    with pytest.raises(FetchError, match="non-public"):
        fetch_url(f"{server}/cat.png", limits=FetchLimits())


def test_every_redirect_hop_is_checked(server):
    with pytest.raises(FetchError, match="127.0.0.1.*refused"):
        fetch_url(f"{server}/to-loopback", limits=ALLOW_TEST_SERVER)
    with pytest.raises(FetchError, match="more than 3 redirects"):
        fetch_url(f"{server}/loop", limits=ALLOW_TEST_SERVER)


def test_size_and_status_are_capped(server):
    with pytest.raises(FetchError, match="larger than 10,485,760 bytes"):
        fetch_url(f"{server}/big", limits=ALLOW_TEST_SERVER)
    small = FetchLimits(allow_networks=[f"{SERVER_IP}/32"], max_bytes=1_000_000)
    with pytest.raises(FetchError, match="larger than 1,000,000 bytes"):
        fetch_url(f"{server}/stream", limits=small)
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_url(f"{server}/nothing-here", limits=ALLOW_TEST_SERVER)


def test_it_refuses_a_name_that_resolves_to_an_address_carrying_ipv4():
    with pytest.raises(FetchError, match=r"2002:a9fe:a9fe::, which carries 169.254.169.254"):
        check_url("http://six.example/", limits=FetchLimits(), resolver=lambda h, p: ["2002:a9fe:a9fe::"])
    # A public IPv6 address is still fetched.
    assert check_url("http://v6.example/", limits=FetchLimits(),
                     resolver=lambda h, p: ["2606:2800:220:1::1"])[3] == "2606:2800:220:1::1"


@pytest.mark.parametrize("path", ["/drip", "/drip-headers"])
def test_one_wall_clock_deadline_bounds_a_server_that_drips(server, path):
    import time

    limits = FetchLimits(allow_networks=[f"{SERVER_IP}/32"], timeout=1.0)
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fetch_url(f"{server}{path}", limits=limits)
    # 1000 bytes at 10 a second would take 100 s; each recv returns well inside the socket timeout,
    # so only a deadline over the whole fetch stops it (generous margin for a loaded machine).
    assert time.monotonic() - started < 10.0


def test_the_limits_come_from_settings(settings):
    from modeling.services import fetch_limits

    settings.LIGHTBULB_FETCH_MAX_BYTES = 1234
    settings.LIGHTBULB_FETCH_ALLOW_NETWORKS = [f"{SERVER_IP}/32"]
    limits = fetch_limits()
    assert limits.max_bytes == 1234 and limits.allow_networks == (f"{SERVER_IP}/32",)
    # By default nothing private is allowed.
    settings.LIGHTBULB_FETCH_ALLOW_NETWORKS = []
    assert fetch_limits().allow_networks == ()

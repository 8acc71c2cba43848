"""The SSRF guard of /score's image URLs, against a real local HTTP server and real name resolution."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modeling.fetch import FetchError, FetchLimits, check_url, fetch_url
from tests.conftest import png_bytes

IMAGE = png_bytes((200, 30, 30))
SERVER_IP = "127.0.0.2"  # the only address the tests allow; 127.0.0.1 stays refused


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        port = self.server.server_address[1]
        routes = {
            "/cat.png": (200, {"Content-Type": "image/png"}, IMAGE),
            "/to-loopback": (302, {"Location": f"http://127.0.0.1:{port}/cat.png"}, b""),
            "/to-cat": (302, {"Location": "/cat.png"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/big": (200, {"Content-Length": str(11 * 1024 * 1024)}, b""),
        }
        if self.path == "/stream":  # no Content-Length: the cap must hold while reading
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b"x" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading at its cap, as it should
            return
        status, headers, body = routes.get(self.path, (404, {}, b"missing"))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer((SERVER_IP, 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://{SERVER_IP}:{httpd.server_address[1]}"
    httpd.shutdown()


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


def test_the_limits_come_from_settings(settings):
    from modeling.services import fetch_limits

    settings.LIGHTBULB_FETCH_MAX_BYTES = 1234
    settings.LIGHTBULB_FETCH_ALLOW_NETWORKS = [f"{SERVER_IP}/32"]
    limits = fetch_limits()
    assert limits.max_bytes == 1234 and limits.allow_networks == (f"{SERVER_IP}/32",)
    # By default nothing private is allowed.
    settings.LIGHTBULB_FETCH_ALLOW_NETWORKS = []
    assert fetch_limits().allow_networks == ()

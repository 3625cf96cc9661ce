"""The dashboard's routing and transport pieces, exactly and fast: no hive, no network but socketpairs."""

from __future__ import annotations

import socket

import h11
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from hive_trio.dashboard.protocol import ResumePoint
from hive_trio.dashboard.routes import (
    NEEDS_TOKEN_PAGE,
    WRONG_TOKEN_PAGE,
    HttpRequest,
    OpenStream,
    ReadState,
    RefuseStream,
    Reply,
    Site,
    StaticFile,
    content_type_for,
    cookie_value,
    route,
    session_cookie,
    static_name,
)
from hive_trio.dashboard.transport import ConnectionStream, StalledPeer, receive_request, send_reply

TOKEN = "t0k3n-abcdefghijklmnopqrstuvwxyz0123456789"
SITE = Site(token=TOKEN, cookie_name="hive_trio_token_7847", public=False, page="<!doctype html>page")
HOST = ("host", "127.0.0.1:7847")


def req(method: str, target: str, *headers: tuple[str, str], host: bool = True) -> HttpRequest:
    fields = ([HOST] if host else []) + list(headers)
    return HttpRequest(method, target, tuple((k.lower().encode(), v.encode()) for k, v in fields))


def ws(target: str, *headers: tuple[str, str], host: tuple[str, str] = HOST) -> HttpRequest:
    fields = [host, ("upgrade", "websocket"), ("connection", "Upgrade"), *headers]
    return HttpRequest("GET", target, tuple((k.encode(), v.encode()) for k, v in fields))


def status(decision: object) -> int:
    assert isinstance(decision, Reply | RefuseStream), decision
    return decision.status


# ------------------------------------------------------------------------------------ the page


def test_page_with_the_token_sets_the_session_cookie() -> None:
    reply = route(req("GET", f"/?token={TOKEN}"), SITE, closing=False)
    assert isinstance(reply, Reply) and reply.status == 200 and reply.body == SITE.page.encode()
    cookie = dict(reply.headers)["Set-Cookie"]
    assert cookie.startswith(f"hive_trio_token_7847={TOKEN}")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie


def test_page_refusals_say_why() -> None:
    missing = route(req("GET", "/"), SITE, closing=False)
    assert isinstance(missing, Reply) and missing.status == 401 and missing.body == NEEDS_TOKEN_PAGE.encode()
    wrong = route(req("GET", "/?token=nope"), SITE, closing=False)
    assert isinstance(wrong, Reply) and wrong.status == 403 and wrong.body == WRONG_TOKEN_PAGE.encode()
    # An empty token is a wrong one, not a missing one.
    assert status(route(req("GET", "/?token="), SITE, closing=False)) == 403
    by_cookie = route(req("GET", "/", ("Cookie", f"a=b; hive_trio_token_7847={TOKEN}")), SITE, closing=False)
    assert status(by_cookie) == 200 and not dict(by_cookie.headers)  # type: ignore[union-attr]
    # Another hive's cookie on the same host (another port) is not ours.
    other = route(req("GET", "/", ("Cookie", f"hive_trio_token_9999={TOKEN}")), SITE, closing=False)
    assert status(other) == 401


def test_head_is_routed_like_get() -> None:
    assert route(req("HEAD", f"/?token={TOKEN}"), SITE, closing=False) == route(
        req("GET", f"/?token={TOKEN}"), SITE, closing=False
    )
    assert route(req("HEAD", "/static/dashboard.js"), SITE, closing=False) == StaticFile(
        "dashboard.js", "text/javascript; charset=utf-8"
    )


def test_security_headers_on_every_reply() -> None:
    for reply in (Reply(200, b"x"), Reply(404)):
        names = {k.decode().lower() for k, _ in reply.header_list()}
        assert {"content-security-policy", "x-frame-options", "referrer-policy", "cache-control"} <= names
    assert (b"Connection", b"close") in Reply(400).header_list(keep_alive=False)


# ------------------------------------------------------------------------------------ other paths


def test_state_needs_the_token() -> None:
    assert route(req("GET", f"/api/state?token={TOKEN}"), SITE, closing=False) == ReadState()
    assert route(req("GET", "/api/state", ("Cookie", f"hive_trio_token_7847={TOKEN}")), SITE, closing=False) == (
        ReadState()
    )
    assert status(route(req("GET", "/api/state"), SITE, closing=False)) == 401
    assert status(route(req("GET", "/api/state?token=x"), SITE, closing=False)) == 401


@pytest.mark.parametrize(
    ("method", "target", "expected", "allow"),
    [
        ("POST", "/", 405, "GET, HEAD"),
        ("PUT", "/api/state", 405, "GET, HEAD"),
        ("DELETE", "/static/dashboard.js", 405, "GET, HEAD"),
        ("POST", "/stream", 405, "GET"),
        ("GET", "/stream", 426, None),
        ("GET", "/favicon.ico", 404, None),
        ("GET", "/api", 404, None),
        ("OPTIONS", "*", 400, None),  # asterisk-form, like absolute-form, is refused
    ],
)
def test_methods_and_unknown_paths(method: str, target: str, expected: int, allow: str | None) -> None:
    reply = route(req(method, target), SITE, closing=False)
    assert isinstance(reply, Reply) and reply.status == expected
    assert dict(reply.headers).get("Allow") == allow


def test_host_guard_on_a_loopback_bind() -> None:
    for host in ("evil.example", "evil.example:7847", "127.0.0.1.nip.io:7847", "10.0.0.1:7847"):
        assert status(route(req("GET", f"/?token={TOKEN}", ("Host", host), host=False), SITE, closing=False)) == 421
    for host in ("localhost:7847", "[::1]:7847", "127.0.0.2:7847"):
        assert status(route(req("GET", f"/?token={TOKEN}", ("Host", host), host=False), SITE, closing=False)) == 200
    assert status(route(req("GET", "/", host=False), SITE, closing=False)) == 421  # HTTP/1.0 without Host
    duplicate = req("GET", f"/?token={TOKEN}", ("Host", "evil.example"))
    assert status(route(duplicate, SITE, closing=False)) == 400
    public = Site(token=TOKEN, cookie_name="c", public=True, page="p")
    assert status(
        route(req("GET", f"/?token={TOKEN}", ("Host", "hive.example"), host=False), public, closing=False)
    ) == (200)


@pytest.mark.parametrize(
    "raw",
    [
        "../server.py",
        "%2e%2e/server.py",
        "%2E%2E%2Fserver.py",
        "..%2fserver.py",
        "%252e%252e/x",
        "/etc/passwd",
        "%2fetc%2fpasswd",
        "a//b.js",
        ".hidden",
        "dir/.hidden",
        "dashboard.js%00.png",
        "..\\server.py",
        "%ff%fe",
        "",
        "a/./b.js",
        "-rf",
    ],
)
def test_static_names_refuse_anything_but_plain_relative_names(raw: str) -> None:
    assert static_name(raw) is None
    assert status(route(req("GET", "/static/" + raw), SITE, closing=False)) == 404


def test_static_names_and_types() -> None:
    assert static_name("dashboard.js") == "dashboard.js"
    assert static_name("img/logo.svg") == "img/logo.svg"
    assert static_name("a%20b") is None  # decoded, a space is not a file-name character here
    assert content_type_for("x.CSS") == "text/css; charset=utf-8"
    assert content_type_for("x.html") == "text/html; charset=utf-8"
    assert content_type_for("x.wasm") == "application/octet-stream"
    assert content_type_for("Makefile") == "application/octet-stream"


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_no_static_name_escapes_its_directory(raw: str) -> None:
    name = static_name(raw)
    if name is not None:
        parts = name.split("/")
        assert all(p and p not in (".", "..") and not p.startswith(".") for p in parts)
        assert "\\" not in name and "\x00" not in name and "%" not in name


# ------------------------------------------------------------------------------------ websocket


def test_stream_handshakes() -> None:
    assert route(ws(f"/stream?token={TOKEN}"), SITE, closing=False) == OpenStream(None)
    resumed = route(ws(f"/stream?token={TOKEN}&since=41&epoch=e1"), SITE, closing=False)
    assert resumed == OpenStream(ResumePoint(41, "e1"))
    own_origin = ws(f"/stream?token={TOKEN}", ("origin", "http://127.0.0.1:7847"))
    assert isinstance(route(own_origin, SITE, closing=False), OpenStream)
    by_cookie = ws("/stream", ("cookie", f"hive_trio_token_7847={TOKEN}"))
    assert isinstance(route(by_cookie, SITE, closing=False), OpenStream)


@pytest.mark.parametrize(
    ("request_", "closing", "expected"),
    [
        (ws(f"/stream?token={TOKEN}", host=("host", "evil.example:7847")), False, 421),
        (ws(f"/stream?token={TOKEN}", ("origin", "http://evil.example")), False, 403),
        (ws(f"/stream?token={TOKEN}", ("origin", "http://127.0.0.1:9999")), False, 403),
        (ws(f"/stream?token={TOKEN}", ("origin", "null")), False, 403),
        (ws(f"/stream?token={TOKEN}", ("origin", "http://127.0.0.1:7847"), ("origin", "http://evil")), False, 403),
        (ws("/stream?token=wrong"), False, 401),
        (ws("/stream"), False, 401),
        (ws(f"/stream?token={TOKEN}"), True, 503),
        # Host outranks Origin outranks the token: a rebinding page learns nothing about the token.
        (ws("/stream?token=wrong", ("origin", "http://evil.example"), host=("host", "evil.example")), False, 421),
        (ws("/stream?token=wrong", ("origin", "http://evil.example")), False, 403),
    ],
)
def test_stream_refusals(request_: HttpRequest, closing: bool, expected: int) -> None:
    decision = route(request_, SITE, closing=closing)
    assert isinstance(decision, RefuseStream) and decision.status == expected and decision.reason


def test_an_upgrade_elsewhere_is_plain_http() -> None:
    assert status(route(ws(f"/?token={TOKEN}"), SITE, closing=False)) == 200
    assert status(route(ws("/nowhere"), SITE, closing=False)) == 404


# ------------------------------------------------------------------------------------ cookies


def test_cookie_lookup_is_lenient_about_other_apps_cookies() -> None:
    assert cookie_value(['other="quoted,value"; broken; x=1; mine=abc'], "mine") == "abc"
    assert cookie_value(["a=1", "mine=two"], "mine") == "two"
    assert cookie_value(['mine="q"'], "mine") == "q"
    assert cookie_value(["mine_longer=1; xmine=2"], "mine") is None
    assert cookie_value([], "mine") is None
    assert session_cookie("n", "v") == "n=v; HttpOnly; Path=/; SameSite=strict"


def test_request_from_h11_reads_query_and_upgrade() -> None:
    event = h11.Request(
        method="GET", target="/stream?since=3&since=5&token=a%20b", headers=[("Host", "x"), ("Upgrade", "WebSocket")]
    )
    request = HttpRequest.from_h11(event)
    assert request.path == "/stream" and request.query == {"since": "5", "token": "a b"}
    assert request.wants_websocket and request.first("host") == "x"


# ------------------------------------------------------------------------------------ transport


async def _stream_pair() -> tuple[ConnectionStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return ConnectionStream(trio.SocketStream(a), stall_timeout=5.0), trio.SocketStream(b)


async def test_replayed_bytes_come_first_then_the_socket() -> None:
    ours, peer = await _stream_pair()
    ours.replay(b"GET / HTTP/1.1\r\n")
    await peer.send_all(b"more")
    assert await ours.receive_some(4) == b"GET "
    assert await ours.receive_some() == b"/ HTTP/1.1\r\n"
    assert await ours.receive_some() == b"more"


async def test_a_stalled_write_is_cut_by_the_watch_and_the_writer_wakes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, peer = await _stream_pair()
    peer.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    cut = trio.Event()
    ours.on_close(cut.set)

    async def write_forever() -> None:
        with pytest.raises(StalledPeer):
            while True:
                await ours.send_all(b"x" * 65536)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write_forever)
        await trio.sleep(1.0)
        assert not ours.check_stall(trio.current_time())  # blocked for 1 s only
        await trio.sleep(4.5)
        assert ours.check_stall(trio.current_time())
    assert ours.stalled and ours.broken and cut.is_set()
    with pytest.raises(trio.BrokenResourceError):
        await ours.send_all(b"after")


async def test_an_idle_stream_is_never_stalled() -> None:
    ours, _peer = await _stream_pair()
    await ours.send_all(b"done")
    assert not ours.check_stall(trio.current_time() + 3600)


async def test_a_cancelled_write_poisons_the_stream(autojump_clock: trio.testing.MockClock) -> None:
    """Half a frame may be out: nothing may follow it, so the stream is cut rather than reused."""
    ours, peer = await _stream_pair()
    peer.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with trio.move_on_after(0.2):
        await ours.send_all(b"y" * (4 << 20))
    assert ours.broken
    with pytest.raises(trio.BrokenResourceError):
        await ours.send_all(b"z")


async def test_h11_reply_round_trip_over_the_stream() -> None:
    ours, peer = await _stream_pair()
    server = h11.Connection(h11.SERVER)
    await peer.send_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    head = bytearray()
    request = await receive_request(server, ours, head)
    assert request is not None and request.target == b"/x" and bytes(head).startswith(b"GET /x")
    await send_reply(server, ours, Reply(200, b"hello"), head_only=False)
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/x", headers=[("Host", "a")]))
    client.send(h11.EndOfMessage())
    client.receive_data(await peer.receive_some())
    response = client.next_event()
    assert isinstance(response, h11.Response) and response.status_code == 200
    data = client.next_event()
    assert isinstance(data, h11.Data) and data.data == b"hello"
    assert server.our_state is h11.DONE and server.their_state is h11.DONE

"""The dashboard's HTTP side over real TCP: keep-alive, HEAD, static files, and hostile requests.

Malformed, oversized and half-sent request heads, path traversal, and broken websocket handshakes
each get a clear answer (or a prompt close) and never disturb the daemon or another connection.
"""

from __future__ import annotations

import json
import re

import h11
import pytest
import trio
import trio.testing
from dashboard_support import header, next_frame, raw_http, raw_stream, running_hive, token_of
from wsproto import ConnectionType, WSConnection
from wsproto.events import RejectConnection, RejectData, Request

from hive_trio.dashboard.server import HEAD_TIMEOUT, MAX_REQUEST_HEAD
from hive_trio.records import OPERATOR
from hive_trio.rules.config import Config

pytestmark = pytest.mark.timeout(30)


def status_of(raw: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", raw)
    assert match, raw[:200]
    return int(match.group(1))


async def test_keep_alive_serves_many_requests_on_one_connection(config: Config) -> None:
    async with running_hive(config) as hive, raw_http(hive) as http:
        token = token_of(hive)
        page, page_body = await http.request("GET", f"/?token={token}")
        assert page.status_code == 200 and b"<!doctype html>" in page_body.lower()
        cookie = header(page, "set-cookie")
        assert cookie is not None and cookie.startswith(f"hive_trio_token_{http.stream.socket.getpeername()[1]}=")
        script, script_body = await http.request("GET", "/static/dashboard.js")
        assert script.status_code == 200
        assert header(script, "content-type") == "text/javascript; charset=utf-8"
        assert int(header(script, "content-length") or -1) == len(script_body) > 1000
        css, _ = await http.request("GET", "/static/dashboard.css")
        assert header(css, "content-type") == "text/css; charset=utf-8"
        state, state_body = await http.request("GET", "/api/state", headers=[("Cookie", cookie.split(";")[0])])
        assert state.status_code == 200 and header(state, "content-type") == "application/json"
        assert json.loads(state_body)["epoch"] == hive.coordinator.epoch
        missing, _ = await http.request("GET", "/nowhere")
        assert missing.status_code == 404
        # Five exchanges, one connection: nothing asked it to close.
        assert all(header(r, "connection") != "close" for r in (page, script, css, state, missing))


async def test_head_has_the_get_headers_and_no_body(config: Config) -> None:
    async with running_hive(config) as hive, raw_http(hive) as http:
        token = token_of(hive)
        get, get_body = await http.request("GET", f"/?token={token}")
        head, head_body = await http.request("HEAD", f"/?token={token}")
        assert head.status_code == get.status_code == 200
        assert head_body == b""
        assert header(head, "content-length") == str(len(get_body))
        assert header(head, "content-security-policy") == header(get, "content-security-policy")
        static_head, static_body = await http.request("HEAD", "/static/dashboard.css")
        assert static_head.status_code == 200 and static_body == b"" and int(header(static_head, "content-length") or 0)
        # And the connection is still usable after a HEAD (no body was expected, none was sent).
        after, _ = await http.request("GET", "/static/dashboard.css")
        assert after.status_code == 200


async def test_every_answer_carries_the_security_headers(config: Config) -> None:
    async with running_hive(config) as hive, raw_http(hive) as http:
        for target in ("/", "/static/dashboard.js", "/api/state", "/nowhere", "/static/../x"):
            response, _ = await http.request("GET", target)
            assert header(response, "x-frame-options") == "DENY", target
            assert header(response, "x-content-type-options") == "nosniff", target
            assert (header(response, "content-security-policy") or "").startswith("default-src 'self'"), target


@pytest.mark.parametrize(
    "target",
    [
        "/static/../server.py",
        "/static/../../daemon.py",
        "/static/%2e%2e/server.py",
        "/static/%2E%2E%2Fserver.py",
        "/static/..%2fserver.py",
        "/static/%252e%252e/server.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/.hidden",
        "/static/dashboard.js%00.png",
        "/static/..\\server.py",
        "/static/%ff%fe",
        "/static/",
        "/static/nothing-here.js",
    ],
)
async def test_static_path_traversal_gets_404(config: Config, target: str) -> None:
    async with running_hive(config) as hive, raw_http(hive) as http:
        # Raw bytes: an HTTP library would normalise the `..` away before it ever reached us.
        await http.send(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        reply = await http.read_to_close()
        assert status_of(reply) == 404, reply[:300]
        assert b"import" not in reply and b"root:" not in reply


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"this is not http\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Line\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n", 400),  # a TLS hello
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ],
)
async def test_malformed_requests_get_a_clear_error_and_a_close(
    config: Config, request_bytes: bytes, status: int
) -> None:
    async with running_hive(config) as hive:
        async with raw_http(hive) as http:
            await http.send(request_bytes)
            reply = await http.read_to_close()
            assert status_of(reply) == status, reply[:300]
            assert b"\r\nconnection: close\r\n" in reply.lower()
        # The daemon did not notice: the next connection is served as usual.
        async with raw_http(hive) as http:
            ok, _ = await http.request("GET", "/static/dashboard.css")
            assert ok.status_code == 200


async def test_an_oversized_request_head_gets_431(config: Config) -> None:
    async with running_hive(config) as hive, raw_http(hive) as http:
        await http.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        cookie = b"Cookie: " + b"a" * 1000 + b"\r\n"
        try:
            for _ in range(MAX_REQUEST_HEAD // len(cookie) + 4):
                await http.send(cookie)
        except trio.BrokenResourceError:
            pass  # the server may close while we are still writing; its answer is already in flight
        reply = await http.read_to_close()
        assert status_of(reply) == 431
        assert b"request head too large" in reply


async def test_a_half_sent_head_times_out_with_408(config: Config, autojump_clock: trio.testing.MockClock) -> None:
    """Slowloris: a client that dribbles a head never completes it; it gets 408 at the deadline."""
    async with running_hive(config) as hive, raw_http(hive) as http:
        started = trio.current_time()
        await http.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(5):
            await trio.sleep(1.0)
            await http.send(b"X-Drip: 1\r\n")  # progress, but the head has one deadline
        reply = await http.read_to_close(within=HEAD_TIMEOUT * 2)
        waited = trio.current_time() - started
        assert status_of(reply) == 408
        assert HEAD_TIMEOUT <= waited < HEAD_TIMEOUT + 1


async def test_an_idle_keep_alive_connection_is_closed_quietly(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_hive(config) as hive, raw_http(hive) as http:
        first, _ = await http.request("GET", "/static/dashboard.css")
        assert first.status_code == 200
        idle_from = trio.current_time()
        assert await http.read_to_close(within=HEAD_TIMEOUT * 2) == b""
        assert HEAD_TIMEOUT <= trio.current_time() - idle_from < HEAD_TIMEOUT + 1


async def test_methods_bodies_and_a_plain_get_of_the_stream(config: Config) -> None:
    async with running_hive(config) as hive:
        async with raw_http(hive) as http:
            post, _ = await http.request("POST", "/")
            assert post.status_code == 405 and header(post, "allow") == "GET, HEAD"
            delete, _ = await http.request("DELETE", "/api/state")
            assert delete.status_code == 405
            plain, body = await http.request("GET", "/stream")
            assert plain.status_code == 426 and header(plain, "upgrade") == "websocket"
            assert b"websocket" in body
        async with raw_http(hive) as http:
            # A request whose body has not arrived is answered, then the connection closes rather
            # than read a body nobody asked for.
            await http.send(b"POST /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\nabc")
            reply = await http.read_to_close()
            assert status_of(reply) == 405 and b"connection: close" in reply.lower()
        async with raw_http(hive) as http:
            # A small body that arrived with its head is read past; the connection goes on.
            await http.send(b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello")
            await http.send(b"GET /static/dashboard.css HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            replies = await http.read_to_close()
            assert replies.count(b"HTTP/1.1 ") == 2
            assert status_of(replies) == 404 and b"HTTP/1.1 200 OK" in replies


async def test_a_client_leaving_mid_reply_harms_nothing(config: Config) -> None:
    async with running_hive(config) as hive:
        coord = hive.coordinator
        await coord.record_spawn("alpha")
        for i in range(30):  # a state of ~1.8 MB, so the reply is still being written when they go
            await coord.send("alpha", OPERATOR, f"{i} " + "m" * 60_000)
        token = token_of(hive)
        for _ in range(5):
            async with raw_http(hive) as http:
                await http.send(f"GET /api/state?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                await http.stream.receive_some(1024)
        async with raw_http(hive) as http:
            state, body = await http.request("GET", f"/api/state?token={token}")
            assert state.status_code == 200 and len(json.loads(body)["messages"]) == 30


def _handshake_bytes(port: int, *, host: str | None = None, drop: str | None = None, token: str = "x") -> bytes:
    raw: bytes = WSConnection(ConnectionType.CLIENT).send(
        Request(host=host or f"127.0.0.1:{port}", target=f"/stream?token={token}")
    )
    if drop is not None:
        raw = b"\r\n".join(line for line in raw.split(b"\r\n") if not line.lower().startswith(drop.encode()))
    return raw


@pytest.mark.parametrize("drop", ["sec-websocket-key", "sec-websocket-version", "connection"])
async def test_a_broken_websocket_handshake_is_refused_at_once(config: Config, drop: str) -> None:
    """wsproto refuses it (400/426) and closes; our side neither hangs nor holds the connection."""
    async with running_hive(config) as hive:
        async with raw_http(hive) as http:
            port = http.stream.socket.getpeername()[1]
            await http.send(_handshake_bytes(port, drop=drop, token=token_of(hive)))
            reply = await http.read_to_close(within=2.0)
            assert status_of(reply) in (400, 426), reply[:300]
        async with raw_stream(hive, token=token_of(hive)) as ws:
            assert (await next_frame(ws))["type"] == "snapshot"


async def test_a_websocket_under_a_foreign_host_is_refused_with_421(config: Config) -> None:
    async with running_hive(config) as hive, raw_http(hive) as http:
        port = http.stream.socket.getpeername()[1]
        client = WSConnection(ConnectionType.CLIENT)
        await http.send(client.send(Request(host=f"evil.example:{port}", target=f"/stream?token={token_of(hive)}")))
        events: list[object] = []
        with trio.fail_after(5):
            while not any(isinstance(e, RejectData) and e.body_finished for e in events):
                client.receive_data(await http.stream.receive_some(65536))
                events.extend(client.events())
        reject = events[0]
        assert isinstance(reject, RejectConnection) and reject.status_code == 421
        assert b"unexpected Host" in b"".join(e.data for e in events if isinstance(e, RejectData))


async def test_many_pipelined_requests_are_answered_in_order(config: Config) -> None:
    async with running_hive(config) as hive, raw_http(hive) as http:
        targets = ["/static/dashboard.css", "/nowhere", "/static/dashboard.js", "/api/state"] * 5
        burst = b"".join(f"GET {t} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() for t in targets)
        await http.send(burst + b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        replies = await http.read_to_close()
        statuses = [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", replies)]
        assert statuses == [200, 404, 200, 401] * 5 + [404]


async def test_h11_accepts_what_browsers_send(config: Config) -> None:
    """A request head as Chromium writes it, byte for byte, is routed normally."""
    async with running_hive(config) as hive, raw_http(hive) as http:
        port = http.stream.socket.getpeername()[1]
        head = (
            f"GET /static/dashboard.js HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: keep-alive\r\n"
            'sec-ch-ua: "Chromium";v="131"\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n'
            "Accept: */*\r\nSec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: no-cors\r\n"
            f"Referer: http://127.0.0.1:{port}/\r\nAccept-Encoding: gzip, deflate, br\r\n"
            'Accept-Language: en-US,en;q=0.9\r\nCookie: other_app="quoted,value"; broken; x=1\r\n\r\n'
        )
        await http.send(head.encode())
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/static/dashboard.js", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        with trio.fail_after(5):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await http.stream.receive_some(65536))
                    continue
                assert isinstance(event, h11.Response)
                assert event.status_code == 200
                break


async def test_http_1_0_gets_its_answer_and_a_close(config: Config, autojump_clock: trio.testing.MockClock) -> None:
    async with running_hive(config) as hive, raw_http(hive) as http:
        await http.send(b"GET /static/dashboard.css HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        reply = await http.read_to_close(within=0.9)  # no keep-alive for HTTP/1.0: closed at once
        assert reply.startswith(b"HTTP/1.1 200 ") and b"connection: close" in reply.lower()

"""What the dashboard answers to one HTTP request head, decided without any I/O.

The server reads a request head with h11 and asks `route` what to do: send a finished `Reply`, read a
static file or the snapshot and reply with it, or hand the connection to the websocket (`OpenStream`)
or refuse its handshake (`RefuseStream`). Every access rule of the dashboard (token, cookie, Origin,
Host, methods, safe static names, security headers) lives here, so it is tested fast and exactly.
This module must never touch a socket, a file or the coordinator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from http.cookies import SimpleCookie
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import h11

from hive_trio.dashboard.protocol import (
    STATE_PATH,
    STREAM_PATH,
    TOKEN_PARAM,
    ResumePoint,
    host_allowed,
    origin_allowed,
    parse_resume,
    token_matches,
)

STATIC_PREFIX: Final = "/static/"
TEXT: Final = "text/plain; charset=utf-8"
HTML: Final = "text/html; charset=utf-8"
JSON: Final = "application/json"
SECURITY_HEADERS: Final = (
    # Scripts and styles only from the dashboard itself; no framing (a hostile page cannot overlay
    # the approve button); the token in a URL never leaves in a Referer.
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    # The page and its assets change with the daemon's version; never serve a stale script.
    ("Cache-Control", "no-store"),
)
# With `nosniff`, a browser runs a script only if its type says so.
CONTENT_TYPES: Final = {
    ".html": HTML,
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": JSON,
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": TEXT,
}
# One static path segment: starts with a letter or digit (no `.`/`..`, no hidden files, no empty
# segment) and holds nothing that could mean a separator or escape on any filesystem.
_STATIC_SEGMENT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Styled by the page's own stylesheet: the CSP allows no inline style.
NEEDS_TOKEN_PAGE: Final = """<!doctype html><meta charset="utf-8"><title>hive</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/dashboard.css">
<main class="notice panel"><h1>This dashboard needs its token</h1>
<p>Open the URL that <code>hive-trio dashboard-url</code> prints on the daemon's machine.</p></main>"""
WRONG_TOKEN_PAGE: Final = NEEDS_TOKEN_PAGE.replace("needs its token", "did not accept that token")


# ------------------------------------------------------------------------------------ request


@attrs.frozen
class HttpRequest:
    """One request head as h11 parsed it: method, target, and headers (names lower-cased)."""

    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    path: str = attrs.field(init=False)
    query: Mapping[str, str] = attrs.field(init=False)

    @path.default
    def _path(self) -> str:
        return urlsplit(self.target).path

    @query.default
    def _query(self) -> Mapping[str, str]:
        # The last value wins for a repeated key, as in every mainstream framework.
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.target).query, keep_blank_values=True).items()}

    @classmethod
    def from_h11(cls, event: h11.Request) -> HttpRequest:
        return cls(
            method=event.method.decode("ascii", "replace"),
            target=event.target.decode("ascii", "replace"),
            headers=tuple((bytes(name), bytes(value)) for name, value in event.headers),
        )

    def values(self, name: str) -> list[str]:
        key = name.encode("ascii")
        return [value.decode("latin-1") for header, value in self.headers if header == key]

    def first(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None

    @property
    def wants_websocket(self) -> bool:
        """An `Upgrade: websocket` offer; wsproto checks the rest of the handshake itself."""
        offered = ",".join(self.values("upgrade")).split(",")
        return any(token.strip().lower() == "websocket" for token in offered)

    def cookie(self, name: str) -> str | None:
        return cookie_value(self.values("cookie"), name)


def cookie_value(headers: Sequence[str], name: str) -> str | None:
    """The value of cookie `name` in `Cookie` headers, read as browsers write them (RFC 6265 §4.2.1).

    Deliberately lenient: cookies are per host, not per port, so other local web apps' cookies arrive
    here too, and one malformed cookie of theirs must not hide ours (`http.cookies` stops at the
    first pair it cannot parse).
    """
    for header in headers:
        for pair in header.split(";"):
            key, sep, value = pair.strip().partition("=")
            if sep and key.strip() == name:
                return value.strip().strip('"')
    return None


def session_cookie(name: str, token: str) -> str:
    """A `Set-Cookie` value: gone when the browser closes; never sent cross-site, never seen by JS."""
    jar: SimpleCookie = SimpleCookie()
    jar[name] = token
    morsel = jar[name]
    morsel["httponly"] = True
    morsel["samesite"] = "strict"
    morsel["path"] = "/"
    return morsel.OutputString()


# ------------------------------------------------------------------------------------ outcomes


@attrs.frozen
class Reply:
    """A complete HTTP response (the security headers are added when it is written)."""

    status: int
    body: bytes = b""
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()

    def header_list(self, *, keep_alive: bool = True) -> list[tuple[bytes, bytes]]:
        fields = [
            ("Content-Type", self.content_type),
            ("Content-Length", str(len(self.body))),
            *SECURITY_HEADERS,
            *self.headers,
        ]
        if not keep_alive:
            fields.append(("Connection", "close"))
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in fields]

    @property
    def reason(self) -> bytes:
        try:
            return HTTPStatus(self.status).phrase.encode("ascii")
        except ValueError:
            return b""


@attrs.frozen
class StaticFile:
    """Serve `name` (a checked relative path) from the package's static directory."""

    name: str
    content_type: str


@attrs.frozen
class ReadState:
    """Answer `/api/state` with a fresh snapshot."""


@attrs.frozen
class OpenStream:
    """Accept the websocket handshake; resume from `resume` if it can be honoured."""

    resume: ResumePoint | None


@attrs.frozen
class RefuseStream:
    """Refuse the websocket handshake as HTTP, with a one-line reason for a person."""

    status: int
    reason: str


Route = Reply | StaticFile | ReadState | OpenStream | RefuseStream


@attrs.frozen
class Site:
    """What routing needs to know about one running dashboard."""

    token: str
    cookie_name: str
    public: bool
    page: str


def text_reply(status: int, text: str, *, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, (text.rstrip("\n") + "\n").encode("utf-8"), TEXT, headers)


def error_reply(status: int) -> Reply:
    """What a malformed, oversized or timed-out request head gets before the connection closes."""
    reasons = {
        400: "malformed HTTP request",
        408: "the request head did not arrive in time",
        431: "request head too large",
    }
    return text_reply(status, reasons.get(status, "bad request"))


# ------------------------------------------------------------------------------------ routing


def route(request: HttpRequest, site: Site, *, closing: bool) -> Route:
    """Decide what one request gets. Pure: the same head and state always give the same answer."""
    if not request.target.startswith("/"):
        # Absolute-form (`GET http://elsewhere/`) is for proxies, and `*` for OPTIONS; this is no proxy.
        return text_reply(400, "only origin-form request targets (starting with /) are served")
    hosts = request.values("host")
    if len(hosts) > 1:
        return text_reply(400, "more than one Host header")
    host = hosts[0] if hosts else None
    if request.path == STREAM_PATH and request.wants_websocket and request.method == "GET":
        return _stream(request, site, host=host, closing=closing)
    if not host_allowed(host, public=site.public):
        return text_reply(421, "unexpected Host for a loopback dashboard")
    if request.path == "/":
        return _allow(request, ("GET", "HEAD")) or _page(request, site)
    if request.path == STATE_PATH:
        if refused := _allow(request, ("GET", "HEAD")):
            return refused
        if not _authorised(request, site):
            return text_reply(401, "dashboard token missing or wrong")
        return ReadState()
    if request.path == STREAM_PATH:
        if refused := _allow(request, ("GET",)):
            return refused
        return text_reply(426, "/stream is a websocket", headers=(("Upgrade", "websocket"),))
    if request.path.startswith(STATIC_PREFIX):
        if refused := _allow(request, ("GET", "HEAD")):
            return refused
        name = static_name(request.path.removeprefix(STATIC_PREFIX))
        if name is None:
            return text_reply(404, "no such file")
        return StaticFile(name, content_type_for(name))
    return text_reply(404, "not found")


def _stream(request: HttpRequest, site: Site, *, host: str | None, closing: bool) -> Route:
    # Refused with an HTTP status at the handshake, so a client can tell "wrong token" from "down".
    if not host_allowed(host, public=site.public):
        return RefuseStream(421, "unexpected Host for a loopback dashboard")
    origins = request.values("origin")
    if len(origins) > 1 or not origin_allowed(origins[0] if origins else None, host):
        return RefuseStream(403, "websocket from a foreign origin refused")
    if not _authorised(request, site):
        return RefuseStream(401, "dashboard token missing or wrong")
    if closing:
        return RefuseStream(503, "the daemon is shutting down")
    return OpenStream(parse_resume(request.query))


def _page(request: HttpRequest, site: Site) -> Reply:
    offered = request.query.get(TOKEN_PARAM)
    if offered is not None and not token_matches(site.token, offered):
        return Reply(403, WRONG_TOKEN_PAGE.encode(), HTML)
    if offered is None and not token_matches(site.token, request.cookie(site.cookie_name)):
        return Reply(401, NEEDS_TOKEN_PAGE.encode(), HTML)
    headers: tuple[tuple[str, str], ...] = ()
    if offered is not None:
        headers = (("Set-Cookie", session_cookie(site.cookie_name, site.token)),)
    return Reply(200, site.page.encode(), HTML, headers)


def _authorised(request: HttpRequest, site: Site) -> bool:
    return token_matches(site.token, request.query.get(TOKEN_PARAM)) or token_matches(
        site.token, request.cookie(site.cookie_name)
    )


def _allow(request: HttpRequest, methods: tuple[str, ...]) -> Reply | None:
    if request.method in methods:
        return None
    return text_reply(405, f"{request.method} is not allowed here", headers=(("Allow", ", ".join(methods)),))


def static_name(raw: str) -> str | None:
    """A safe relative name under the static directory, or None.

    Percent-decoded once first, so `%2e%2e` is seen as `..`; each segment must then look like a plain
    file name. The server still resolves the result and checks it stays inside the directory.
    """
    try:
        name = unquote(raw, errors="strict") if "%" in raw else raw
    except UnicodeDecodeError:
        return None
    if not name or not all(_STATIC_SEGMENT.fullmatch(part) for part in name.split("/")):
        return None
    return name


def content_type_for(name: str) -> str:
    _, dot, suffix = name.rpartition(".")
    return CONTENT_TYPES.get(f".{suffix.lower()}", "application/octet-stream") if dot else "application/octet-stream"


__all__ = [
    "NEEDS_TOKEN_PAGE",
    "SECURITY_HEADERS",
    "WRONG_TOKEN_PAGE",
    "HttpRequest",
    "OpenStream",
    "ReadState",
    "RefuseStream",
    "Reply",
    "Route",
    "Site",
    "StaticFile",
    "content_type_for",
    "cookie_value",
    "error_reply",
    "route",
    "session_cookie",
    "static_name",
    "text_reply",
]

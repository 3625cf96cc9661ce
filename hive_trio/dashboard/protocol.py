"""The dashboard stream's wire rules, free of sockets: parse actions, encode frames, check access.

Everything here is a pure function or a small state machine, so the server, the client and the tests
share one reading of the protocol (docs/DASHBOARD.md) and it is tested fast and exactly. Shapes live
in `hive_trio.records` and go through its one converter; this module must never do I/O.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import attrs
import cattrs
from wsproto.frame_protocol import FrameProtocol

from hive_trio.records import (
    CONVERTER,
    DASHBOARD_ACTION_TYPES,
    DASHBOARD_OPS,
    FRAME_TYPES,
    DashboardAction,
    DashboardEvent,
    EventFrame,
    RecordError,
    RequestId,
    ResultFrame,
    ResumedFrame,
    Snapshot,
    StreamFrame,
    structure,
    to_json,
)

TOKEN_PARAM: Final = "token"
SINCE_PARAM: Final = "since"
EPOCH_PARAM: Final = "epoch"
STREAM_PATH: Final = "/stream"
STATE_PATH: Final = "/api/state"
# Close codes (RFC 6455 and the IANA registry).
CLOSE_GOING_AWAY: Final = 1001
CLOSE_POLICY: Final = 1008
CLOSE_TRY_AGAIN: Final = 1013

_ACTION_BY_OP: Final[dict[str, type[Any]]] = {t.tag_value: t for t in DASHBOARD_ACTION_TYPES}
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.", "ip6-localhost"})


class ActionError(RecordError):
    """A frame that is not a valid action. `req` is echoed back when the frame carried a usable one."""

    def __init__(self, message: str, *, req: RequestId = None) -> None:
        super().__init__(message)
        self.req = req


# ------------------------------------------------------------------------------------ actions in


def parse_action(text: str | bytes) -> DashboardAction:
    """Decode one client frame into an action, or raise `ActionError` with a reason for a person."""
    if isinstance(text, bytes):
        raise ActionError("send actions as text frames holding one JSON object")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ActionError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ActionError(f"an action is a JSON object, got {type(data).__name__}")
    req = data.get("req")
    if req is not None and (isinstance(req, bool) or not isinstance(req, int | str)):
        raise ActionError("'req' must be a number or a string")
    op = data.get("op")
    if not isinstance(op, str):
        raise ActionError(f"missing 'op'; expected one of: {', '.join(DASHBOARD_OPS)}", req=req)
    cls = _ACTION_BY_OP.get(op)
    if cls is None:
        raise ActionError(f"unknown op {op!r}; expected one of: {', '.join(DASHBOARD_OPS)}", req=req)
    fields = {k: v for k, v in data.items() if k != "op"}
    try:
        action: DashboardAction = CONVERTER.structure(fields, cls)
    except cattrs.BaseValidationError as exc:
        reasons = "; ".join(cattrs.transform_error(exc, path="op"))
        raise ActionError(f"bad {op!r} action: {reasons.replace('@ op.', '@ ')}", req=req) from None
    except (TypeError, ValueError, KeyError) as exc:
        raise ActionError(f"bad {op!r} action: {exc}", req=req) from None
    return action


def encode_action(op: str, req: RequestId, fields: Mapping[str, Any]) -> str:
    """The client's side of `parse_action`: validates locally so a typo fails before it is sent."""
    cls = _ACTION_BY_OP.get(op)
    if cls is None:
        raise ActionError(f"unknown op {op!r}; expected one of: {', '.join(DASHBOARD_OPS)}")
    action: DashboardAction = structure({**fields, "req": req}, cls)
    return to_json(action, DashboardAction)


# ------------------------------------------------------------------------------------- frames out


def _dump(frame: StreamFrame) -> str:
    return to_json(frame, StreamFrame)


def encode_snapshot(snapshot: Snapshot) -> str:
    return _dump(snapshot)


def encode_event(event: DashboardEvent) -> str:
    return _dump(EventFrame(event=event))


def encode_resumed(seq: int, epoch: str) -> str:
    return _dump(ResumedFrame(seq=seq, epoch=epoch))


def text_frame(text: str) -> bytes:
    """`text` as one whole, unmasked websocket text frame: what a server without extensions sends.

    wsproto frames it; with `fin=True` its frame writer keeps no state between calls, so the same
    bytes are right for every connection.
    """
    return bytes(_FRAMES.send_data(text, fin=True))


_FRAMES: Final = FrameProtocol(client=False, extensions=[])


def encode_result(req: RequestId, *, ok: bool, error: str | None = None, result: Any = None) -> str:
    return _dump(ResultFrame(req=req, ok=ok, error=error, result=result))


def parse_frame(text: str | bytes) -> StreamFrame | None:
    """Decode a server frame; None for a frame type this client does not know (a newer server)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RecordError(f"server sent invalid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise RecordError("server sent a frame without a 'type'")
    if data["type"] not in FRAME_TYPES:
        return None
    frame: StreamFrame = structure(data, StreamFrame)
    return frame


# ------------------------------------------------------------------------------------ resume


@attrs.frozen
class ResumePoint:
    """What a reconnecting client asks for: events after `since` of the run `epoch`."""

    since: int
    epoch: str


def parse_resume(query: Mapping[str, str]) -> ResumePoint | None:
    """`?since=SEQ&epoch=E`; anything unusable means "send a snapshot" rather than an error."""
    raw, epoch = query.get(SINCE_PARAM), query.get(EPOCH_PARAM)
    if raw is None or not epoch:
        return None
    try:
        since = int(raw)
    except ValueError:
        return None
    return ResumePoint(since=since, epoch=epoch) if since >= 0 else None


@attrs.define
class SeqFilter:
    """The client's rule (SPEC §4): after a snapshot at N, drop every event with seq <= N.

    `accept` answers whether a frame should reach the application, and keeps the resume point.
    """

    epoch: str | None = None
    seq: int | None = None

    def accept(self, frame: StreamFrame) -> bool:
        if isinstance(frame, Snapshot):
            self.epoch, self.seq = frame.epoch, frame.seq
            return True
        if isinstance(frame, ResumedFrame):
            self.epoch, self.seq = frame.epoch, frame.seq
            return True
        if isinstance(frame, EventFrame):
            if self.seq is None or frame.event.seq <= self.seq:
                return False
            self.seq = frame.event.seq
            return True
        return True

    def resume_point(self) -> ResumePoint | None:
        if self.epoch is None or self.seq is None:
            return None
        return ResumePoint(since=self.seq, epoch=self.epoch)


def stream_url(base: str, *, token: str | None, resume: ResumePoint | None) -> str:
    """The websocket URL for a dashboard URL (`http://host:port/?token=…`), with a resume point."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if token is not None:
        query[TOKEN_PARAM] = token
    query.pop(SINCE_PARAM, None)
    query.pop(EPOCH_PARAM, None)
    if resume is not None:
        query[SINCE_PARAM] = str(resume.since)
        query[EPOCH_PARAM] = resume.epoch
    return urlunsplit((scheme, parts.netloc, STREAM_PATH, urlencode(query), ""))


# ------------------------------------------------------------------------------------ access


def token_matches(expected: str, offered: str | None) -> bool:
    """Constant-time: the time taken says nothing about how much of a guess was right."""
    if not offered:
        return False
    return hmac.compare_digest(expected.encode(), offered.encode())


def is_loopback_host(host: str) -> bool:
    """A literal loopback address or a loopback name; other names are not trusted to stay local."""
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def split_host(hostport: str) -> tuple[str, int | None]:
    """`host[:port]` from a Host header: bracketed IPv6, or bare IPv6 as some clients send it."""
    text = hostport.strip().lower()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        # Bare IPv6 (Host should bracket it; trio-websocket does not): read a trailing all-digit group
        # as the port when what precedes it is an address, so `::1:7847` is ::1 on port 7847.
        host, _, port = text.rpartition(":")
        if not (port.isdigit() and _is_address(host)):
            host, port = text, ""
    return host, int(port) if port.isdigit() else None


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_allowed(host_header: str | None, *, public: bool) -> bool:
    """On a loopback bind only loopback `Host`s are served: a DNS-rebinding page gets nothing."""
    if public:
        return True
    if not host_header:
        return False
    return is_loopback_host(split_host(host_header)[0])


def origin_allowed(origin: str | None, host_header: str | None) -> bool:
    """A websocket's `Origin`, when present, must be the dashboard itself (the page's own origin).

    Browsers always send `Origin` on websockets, so a hostile page open in the operator's browser is
    refused; non-browser clients (the CLI's `watch`) send none and rely on the token alone.
    """
    if origin is None:
        return True
    if not host_header:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    if "@" in parts.netloc or parts.path or parts.query or parts.fragment:
        # An origin is scheme://host[:port] and nothing else; `http://x@127.0.0.1` is no browser's.
        return False
    try:
        origin_port = parts.port
    except ValueError:
        return False
    default = 443 if parts.scheme == "https" else 80
    host, port = split_host(host_header)
    return ((parts.hostname or "").lower(), origin_port or default) == (host, port or default)


__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "CLOSE_TRY_AGAIN",
    "STATE_PATH",
    "STREAM_PATH",
    "TOKEN_PARAM",
    "ActionError",
    "ResumePoint",
    "SeqFilter",
    "encode_action",
    "encode_event",
    "encode_result",
    "encode_resumed",
    "encode_snapshot",
    "host_allowed",
    "is_loopback_host",
    "origin_allowed",
    "parse_action",
    "parse_frame",
    "parse_resume",
    "split_host",
    "stream_url",
    "text_frame",
    "token_matches",
]

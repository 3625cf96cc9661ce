"""host.sock's wire, sans-IO: one JSON request line in, a `HostRequest` record out; responses encoded.

Wire-compatible with hyperhive's host admin socket v1 (SPEC §5.2): requests are JSON objects tagged
`cmd`, responses are `{"version": 1, "ok": bool, "error": str|null, ...fields}`. Every way a line can be
wrong ends in `HostProtocolError` whose message says what to fix, and every agent name is validated here,
before any handler (let alone a path) sees it. No sockets, no coordinator, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, cast

from hive_trio.errors import InvalidRequest
from hive_trio.records import (
    CONVERTER,
    HOST_REQUEST_TYPES,
    HOST_SOCK_VERSION,
    MANAGER_AGENT,
    SYSTEM_SENDER,
    HostLogTail,
    HostRequest,
    HostSend,
    HostStart,
    HostStop,
    describe_error,
    dumps,
    json_type_name,
)
from hive_trio.rules.federation import parse_address
from hive_trio.rules.names import validate_agent_name, validate_recipient

COMMANDS: Final[dict[str, type[Any]]] = {cls.tag_value: cls for cls in HOST_REQUEST_TYPES}


class HostProtocolError(InvalidRequest):
    """A request line that cannot be served; the message is the response's `error`."""


def parse_request(line: bytes) -> HostRequest:
    """Decode one request line (without its newline) into its record, or raise `HostProtocolError`."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HostProtocolError(f"request is not valid UTF-8 (bad byte at offset {exc.start})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        reason = getattr(exc, "msg", str(exc))
        raise HostProtocolError(f"request is not valid JSON: {reason}") from None
    except RecursionError:
        raise HostProtocolError("request is not valid JSON: nested too deeply") from None
    return parse_object(data)


def parse_object(data: Any) -> HostRequest:
    """Decode an already-parsed JSON value into its request record."""
    if not isinstance(data, Mapping):
        raise HostProtocolError(f"request must be a JSON object with a 'cmd', got {json_type_name(data)}")
    cmd = data.get("cmd")
    if cmd is None:
        raise HostProtocolError(f"request has no 'cmd'; known commands: {', '.join(COMMANDS)}")
    if not isinstance(cmd, str):
        raise HostProtocolError(f"'cmd' must be a string, got {json_type_name(cmd)}")
    if cmd not in COMMANDS:
        shown = cmd if len(cmd) <= 40 else cmd[:37] + "..."
        raise HostProtocolError(f"unknown cmd {shown!r}; known commands: {', '.join(COMMANDS)}")
    try:
        request: HostRequest = CONVERTER.structure(data, cast(Any, HostRequest))
    except Exception as exc:
        raise HostProtocolError(f"bad {cmd} request: {describe_error(exc)}") from None
    _validate_names(request)
    return request


def _validate_names(request: HostRequest) -> None:
    """Every name a request carries must be one an agent could have; checked before anything else."""
    try:
        name = getattr(request, "name", None)
        # The manager has a log too; no other verb takes its name.
        if name is not None and not (isinstance(request, HostLogTail) and name == MANAGER_AGENT):
            validate_agent_name(name)
        if isinstance(request, HostStart | HostStop):
            for n in request.scope.agent_names:
                validate_agent_name(n)
        if isinstance(request, HostSend):
            if request.to == SYSTEM_SENDER:
                raise InvalidRequest("'system' sends messages but never receives them")
            # `agent@hive` is another hive's agent (docs/FEDERATION.md); the coordinator routes it.
            if parse_address(request.to) is None:
                validate_recipient(request.to)
    except InvalidRequest as exc:
        raise HostProtocolError(f"{type(request).tag_value}: {exc}") from None


def encode_response(*, ok: bool, error: str | None = None, fields: Mapping[str, Any] | None = None) -> bytes:
    """One response line. `fields` must already be plain data (from the one converter)."""
    body: dict[str, Any] = {"version": HOST_SOCK_VERSION, "ok": ok, "error": error}
    if fields:
        body.update(fields)
    return dumps(body).encode() + b"\n"


def ok_response(**fields: Any) -> bytes:
    return encode_response(ok=True, fields=fields)


def error_response(message: str, **fields: Any) -> bytes:
    return encode_response(ok=False, error=message, fields=fields)


def encode_request(cmd: str, **fields: Any) -> bytes:
    """A request line, as a client writes it (the CLI, tests)."""
    return dumps({"cmd": cmd, **fields}).encode() + b"\n"


__all__ = [
    "COMMANDS",
    "HostProtocolError",
    "encode_request",
    "encode_response",
    "error_response",
    "ok_response",
    "parse_object",
    "parse_request",
]

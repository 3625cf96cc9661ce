"""Hypothesis against the real socket servers of a real daemon process: JSON-RPC/MCP frames on an agent's
and the manager's sockets, request lines on host.sock. Structured garbage, wrong types, huge and deep values.

Properties: every frame gets well-formed replies (a request its own, by id) or, for a frame over the limit,
an error and a clean close; and afterwards the daemon still answers `status` and `agent_status`.

CI runs a bounded number of examples (``HIVE_FUZZ_EXAMPLES``, default 60 per test); `scripts/fuzz.py`
runs many more. The tests are plain (sync) functions with blocking sockets: one daemon serves the module.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hive_trio.sockets.host.protocol import COMMANDS
from hive_trio.sockets.mcp.tools import AGENT_TOOLS, MANAGER_TOOLS
from hive_trio.testing import READY_MARK, short_temp_dir

EXAMPLES: Final = int(os.environ.get("HIVE_FUZZ_EXAMPLES", "60"))
MAX_FRAME: Final = 65536
IO_TIMEOUT: Final = 10.0
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

# The thread method: a signal-raised timeout inside a hypothesis test is just another failing example,
# which hypothesis then shrinks by replaying it (10 s of read timeout each), so a hang never ended.
pytestmark = pytest.mark.timeout(60 + EXAMPLES, method="thread")

HELLO: Final = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}}


# ------------------------------------------------------------------------------------ the daemon


@attrs.define
class Daemon:
    process: subprocess.Popen[bytes]
    runtime_dir: Path
    log: Path

    @property
    def host_socket(self) -> Path:
        return self.runtime_dir / "host.sock"

    def socket_of(self, name: str) -> Path:
        if name == "manager":
            return self.runtime_dir / "manager" / "mcp.sock"
        return self.runtime_dir / "agents" / name / "mcp.sock"


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with short_temp_dir("hz-") as directory:
        env = {
            **os.environ,
            "HIVE_TRIO_DASHBOARD_ENABLED": "false",
            "HIVE_TRIO_ADMIN_GROUP": "",
            "HIVE_TRIO_MAX_FRAME_BYTES": str(MAX_FRAME),
            "HIVE_TRIO_MAX_RECV_WAIT": "0.05",  # a fuzzed `recv(wait_seconds=...)` never parks for long
        }
        argv = [sys.executable, "-m", "hive_trio", "daemon", "--log-level", "error"]
        argv += ["--state-dir", str(directory / "state"), "--runtime-dir", str(directory / "run")]
        log = directory / "daemon.log"
        with open(log, "wb") as stderr:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, env=env)
        try:
            assert process.stdout is not None
            ready = process.stdout.readline().decode()
            assert ready.startswith(READY_MARK), log.read_text()[-2000:]
            process.stdout.close()  # nothing more is printed there
            hive = Daemon(process, directory / "run", log)
            for name in ("alpha", "beta"):
                assert host_call(hive, {"cmd": "spawn", "name": name})["ok"]
            yield hive
        finally:
            process.terminate()
            process.wait(15)


class LineSocket:
    """Blocking newline-framed client with a timeout; `None` from `read` means the daemon closed."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.connect(str(path))
        self.buffer = b""
        self.closed = False

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
        return not self.closed

    def read(self) -> Any:
        while b"\n" not in self.buffer:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)  # a reply that is not JSON fails the test here

    def close(self) -> None:
        self.sock.close()


def host_call(daemon: Daemon, request: dict[str, Any]) -> dict[str, Any]:
    client = LineSocket(daemon.host_socket)
    try:
        client.send(json.dumps(request).encode() + b"\n")
        response: dict[str, Any] = client.read()
        return response
    finally:
        client.close()


def mcp_session(path: Path) -> LineSocket:
    client = LineSocket(path)
    client.send(json.dumps({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": HELLO}).encode() + b"\n")
    assert client.read()["id"] == "init"
    client.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    return client


def assert_daemon_answers(daemon: Daemon) -> None:
    """The property that must hold after anything: the daemon is up and answers both kinds of socket."""
    assert daemon.process.poll() is None, "the daemon died"
    response = host_call(daemon, {"cmd": "agent_status"})
    assert response["ok"] is True and {"alpha", "beta"} <= {r["name"] for r in response["agent_statuses"]}
    client = mcp_session(daemon.socket_of("alpha"))
    try:
        client.send(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "status"}}).encode()
            + b"\n"
        )
        reply = client.read()
        assert reply["id"] == 1 and not reply["result"].get("isError"), reply
        assert json.loads(reply["result"]["content"][0]["text"])["name"] == "alpha"
    finally:
        client.close()


# ------------------------------------------------------------------------------------ strategies

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),  # lone surrogates
    st.text(st.characters(max_codepoint=0x1F), max_size=20),  # control characters: JSON escapes them
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
huge_values = st.one_of(
    st.integers(min_value=1, max_value=MAX_FRAME + 5000).map(lambda n: "x" * n),  # past the frame: a close
    st.integers(min_value=1, max_value=400).map(lambda depth: json.loads("[" * depth + "]" * depth)),
)
names = st.one_of(
    st.sampled_from(["alpha", "beta", "manager", "operator", "system", "*", "../x", "A", ""]), st.text(max_size=12)
)
TOOLS: Final = sorted(spec.name for spec in AGENT_TOOLS + MANAGER_TOOLS)


TOOL_FIELDS: Final = {spec.name: attrs.fields(spec.args) for spec in AGENT_TOOLS + MANAGER_TOOLS}


def typed_values(kind: Any) -> st.SearchStrategy[Any]:
    """Values of roughly the right type for a tool argument, edges included."""
    text = str(kind)
    if "list" in text:
        return st.lists(st.text(max_size=20), max_size=5)
    if "int" in text:
        return st.integers(min_value=-(2**64), max_value=2**64) | st.sampled_from([0, 1, 32, 33, 500, 501, -1])
    if "float" in text:
        return st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0, 0.01, 1e308, -1])
    if "bool" in text:
        return st.booleans()
    return st.one_of(names, st.text(max_size=60), st.integers(1, 70_000).map(lambda n: "b" * n))


@st.composite
def tool_arguments(draw: st.DrawFn, tool: str) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)  # not an object at all, sometimes
    fields = TOOL_FIELDS.get(tool, ())
    args: dict[str, Any] = {}
    for field in fields:
        if draw(st.integers(0, 3)):
            args[field.name] = draw(typed_values(field.type) if draw(st.integers(0, 4)) else json_values)
    for key in draw(st.lists(st.one_of(st.text(max_size=8), st.just("from")), max_size=2)):
        args[key] = draw(json_values)  # unknown (or identity-claiming) arguments
    return args


@st.composite
def jsonrpc_objects(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        message["jsonrpc"] = "2.0"
    elif draw(st.booleans()):
        message["jsonrpc"] = draw(json_values)
    if draw(st.integers(0, 4)):
        message["id"] = draw(st.one_of(st.integers(-(2**63), 2**63), st.text(max_size=10), json_values))
    method = draw(
        st.one_of(
            st.sampled_from(
                ["tools/call", "tools/call", "tools/call", "tools/list", "ping", "initialize",
                 "notifications/initialized", "notifications/cancelled", "resources/list", "prompts/get",
                 "logging/setLevel", "completion/complete"]
            ),
            st.text(max_size=12),
            json_values,
        )
    )  # fmt: skip
    if draw(st.integers(0, 9)):
        message["method"] = method
    if method == "tools/call" and draw(st.integers(0, 9)):
        tool = draw(st.one_of(st.sampled_from(TOOLS), st.text(max_size=12), json_values))
        params: Any = {"name": tool}
        if draw(st.integers(0, 5)):
            params["arguments"] = draw(tool_arguments(tool if isinstance(tool, str) else ""))
        message["params"] = params
    elif draw(st.booleans()):
        message["params"] = draw(json_values)
    if draw(st.integers(0, 9)) == 0:
        message[draw(st.sampled_from(["result", "error", "extra"]))] = draw(json_values)
    return message


mcp_frames = st.one_of(
    jsonrpc_objects().map(lambda m: json.dumps(m).encode()),
    jsonrpc_objects().map(lambda m: json.dumps(m, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ")),
    st.integers(min_value=1, max_value=60_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(min_value=MAX_FRAME - 10, max_value=MAX_FRAME * 3).map(
        lambda n: b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"x" * n + b'"}}'
    ),
)


def expected_reply_id(frame: bytes) -> Any:
    """The id a reply must carry, if the frame is a JSON-RPC request (method + int/str id)."""
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return None
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        return None
    if not isinstance(message.get("method"), str) or "result" in message or "error" in message:
        return None
    # As the reply's JSON will read back: a surrogate pair sent as two CESU-8 code points comes back
    # escaped as `\ud8xx\udcxx`, which a JSON parser joins into one character.
    return json.loads(json.dumps(request_id))


def assert_well_formed_reply(reply: Any) -> None:
    assert isinstance(reply, dict) and reply.get("jsonrpc") == "2.0", reply
    assert ("result" in reply) != ("error" in reply), reply
    assert "id" in reply and (reply["id"] is None or isinstance(reply["id"], int | str)), reply
    if "error" in reply:
        error = reply["error"]
        assert isinstance(error["code"], int) and isinstance(error["message"], str) and error["message"], reply
    else:
        assert isinstance(reply["result"], dict), reply


# ------------------------------------------------------------------------------------ properties


@FUZZ_SETTINGS
@given(frame=mcp_frames, socket_name=st.sampled_from(["alpha", "manager"]), handshake=st.integers(0, 9))
# Found by the fuzz: an id spelled as a CESU-8 surrogate pair (the test once waited for it in vain).
@example(
    frame=b'{"jsonrpc": "2.0", "id": "\xed\xa0\xa8\xed\xb6\xa5\xed\xa3\xb2", "method": "\xc2\x8f", "params": {}}',
    socket_name="manager",
    handshake=8,
)
def test_every_mcp_frame_gets_a_well_formed_reply_or_a_clean_close(
    daemon: Daemon, frame: bytes, socket_name: str, handshake: int
) -> None:
    path = daemon.socket_of(socket_name)
    client = mcp_session(path) if handshake else LineSocket(path)  # sometimes before `initialize`
    try:
        want = expected_reply_id(frame)
        oversize = len(frame) > MAX_FRAME
        client.send(frame + b"\n")
        client.send(b'{"jsonrpc":"2.0","id":"probe","method":"ping"}\n')
        seen_probe = seen_reply = False
        while not (seen_probe and (seen_reply or want is None)):
            reply = client.read()
            if reply is None:
                break
            assert_well_formed_reply(reply)
            if oversize:
                assert "frame limit" in reply["error"]["message"]
            if reply["id"] == "probe" and want != "probe":
                seen_probe = True
            elif want is not None and reply["id"] == want:
                seen_reply = True
        if oversize:
            assert client.closed and not seen_probe, "an oversized frame must close the connection"
        else:
            assert not client.closed, f"the daemon closed the connection on {frame[:200]!r}"
            assert seen_probe and (want is None or seen_reply)
    finally:
        client.close()
    assert_daemon_answers(daemon)


HOST_FIELDS: Final = sorted({f.name for cls in COMMANDS.values() for f in attrs.fields(cls)} | {"x"})


@st.composite
def host_requests(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    request: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        # Everything but the feed, which turns the connection into a stream of rows.
        commands = sorted(c for c in COMMANDS if c != "subscribe_agent_status")
        request["cmd"] = draw(st.one_of(st.sampled_from(commands), st.text(max_size=10), json_values))
    for key in draw(st.lists(st.sampled_from(HOST_FIELDS), max_size=5)):
        if key in ("name", "to"):
            # Never the agents the MCP fuzz and the checks rely on: a fuzzed `destroy alpha` is legitimate.
            request[key] = draw(names.filter(lambda n: n not in ("alpha", "beta")))
        elif key == "scope":
            request[key] = draw(
                st.one_of(json_values, st.fixed_dictionaries({"agent_names": st.lists(names, max_size=3)}))
            )
        else:
            request[key] = draw(json_values)
    return request


host_frames = st.one_of(
    host_requests().map(lambda r: json.dumps(r).encode()),
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ")),
    st.integers(min_value=1, max_value=60_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(min_value=MAX_FRAME - 10, max_value=MAX_FRAME * 3).map(
        lambda n: b'{"cmd":"send","to":"operator","body":"' + b"x" * n + b'"}'
    ),
)


@FUZZ_SETTINGS
@given(frame=host_frames)
def test_every_host_request_gets_one_well_formed_response_or_a_clean_close(daemon: Daemon, frame: bytes) -> None:
    client = LineSocket(daemon.host_socket)
    try:
        client.send(frame + b"\n" + b'{"cmd":"list"}\n')
        expected = 1 if not frame.strip() else 2  # a blank line is no request, and gets no response
        responses = []
        while len(responses) < expected and (response := client.read()) is not None:
            assert isinstance(response, dict) and response["version"] == 1 and isinstance(response["ok"], bool)
            if response["ok"]:
                assert response["error"] is None, response
            else:
                assert isinstance(response["error"], str) and response["error"], response
            responses.append(response)
        if len(frame) > MAX_FRAME:
            assert len(responses) == 1 and "frame limit" in responses[0]["error"]
            assert client.closed, "an oversized request must close the connection"
        else:
            # The connection still serves: one response per request, in order.
            assert len(responses) == expected, responses
            assert responses[-1]["ok"] is True and "agents" in responses[-1], responses
    finally:
        client.close()
    assert_daemon_answers(daemon)


def test_no_fuzzed_input_made_the_daemon_log_an_error(daemon: Daemon) -> None:
    """Bad input is the client's mistake, answered in words: never an internal error or a traceback."""
    assert_daemon_answers(daemon)
    logged = daemon.log.read_text()
    assert "Traceback" not in logged and "ERROR" not in logged, logged[-3000:]

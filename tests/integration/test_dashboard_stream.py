"""The dashboard stream end to end: a real hive, its real server, real websockets on loopback."""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio
from dashboard_support import (
    RecordingLifecycle,
    add_pending_approval,
    dashboard_config,
    http_get,
    next_frame,
    raw_stream,
    running_hive,
    token_of,
    url_of,
)
from trio_websocket import ConnectionClosed, ConnectionRejected, connect_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import CloseConnection, Request, TextMessage

from hive_trio.clients.dashboard import (
    ActionFailed,
    ConnectionLost,
    DashboardRefused,
    open_dashboard_client,
)
from hive_trio.core.coordinator import open_coordinator
from hive_trio.daemon import Hive, open_hive
from hive_trio.dashboard.protocol import ResumePoint, stream_url
from hive_trio.dashboard.server import serve_dashboard
from hive_trio.dashboard.token import dashboard_url
from hive_trio.errors import HiveError
from hive_trio.lifecycle.bare import BareLifecycle
from hive_trio.records import (
    OPERATOR,
    ApprovalResolvedEvent,
    ApprovalStatus,
    QuestionResolvedEvent,
    ResumedFrame,
    SentEvent,
    Snapshot,
    TransientClearedEvent,
    TransientSetEvent,
)
from hive_trio.rules.config import Config

pytestmark = pytest.mark.timeout(30)


async def test_snapshot_then_strictly_increasing_events_while_the_hive_is_busy(config: Config) -> None:
    async with running_hive(config) as hive:
        coord = hive.coordinator
        await coord.record_spawn("alpha")
        for i in range(5):
            await coord.send(OPERATOR, "alpha", f"before {i}")
        stop = trio.Event()
        frames_by_client: list[list[dict[str, object]]] = []

        async def keep_sending() -> None:
            i = 0
            while not stop.is_set():
                await coord.send(OPERATOR, "alpha", f"during {i}")
                i += 1
                await trio.sleep(0.002)

        async def watch_raw() -> None:
            frames: list[dict[str, object]] = []
            frames_by_client.append(frames)
            async with raw_stream(hive, token=token_of(hive)) as ws:
                frames.append(await next_frame(ws))
                for _ in range(20):
                    frames.append(await next_frame(ws))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_sending)
            async with trio.open_nursery() as clients:
                for _ in range(8):
                    clients.start_soon(watch_raw)
                    await trio.sleep(0.01)
            stop.set()

        for frames in frames_by_client:
            first, events = frames[0], frames[1:]
            assert first["type"] == "snapshot"
            assert first["epoch"] == coord.epoch
            snap_seq = first["seq"]
            assert isinstance(snap_seq, int) and snap_seq >= 5
            seqs = [f["event"]["seq"] for f in events]  # type: ignore[index]
            assert all(f["type"] == "event" for f in events)
            # Nothing at or below the snapshot; nothing skipped; nothing twice.
            assert seqs == list(range(snap_seq + 1, snap_seq + 1 + len(seqs)))


async def test_snapshot_carries_the_state_and_api_state_matches(config: Config) -> None:
    async with running_hive(config) as hive:
        coord = hive.coordinator
        await coord.record_spawn("alpha")
        approval = await add_pending_approval(coord, "alpha")
        question = await coord.ask("alpha", "Deploy on Friday?", options=["yes", "no"], ttl_seconds=600)
        await coord.send("alpha", OPERATOR, "hello operator")
        async with open_dashboard_client(url_of(hive)) as client:
            snap = await client.next_update()
            assert isinstance(snap, Snapshot)
            assert [a.name for a in snap.agents] == ["alpha"]
            assert [a.id for a in snap.approvals] == [approval.id]
            assert snap.approvals[0].diff is not None and "+new = 2;" in snap.approvals[0].diff
            assert [q.id for q in snap.questions] == [question.id]
            assert [m.body for m in snap.messages] == ["hello operator"]
        base = hive.dashboard_url
        assert base is not None
        response = await http_get(f"{base}api/state", params={"token": token_of(hive)})
        assert response.status == 200
        state = response.json()
        assert state["seq"] == coord.current_seq()
        assert state["epoch"] == coord.epoch
        assert [a["id"] for a in state["approvals"]] == [approval.id]
        assert (await http_get(f"{base}api/state", params={"token": "nope"})).status == 401
        assert (await http_get(f"{base}api/state")).status == 401


async def test_resume_replays_exactly_the_missed_events(config: Config) -> None:
    async with running_hive(config) as hive:
        coord = hive.coordinator
        await coord.record_spawn("alpha")
        async with raw_stream(hive, token=token_of(hive)) as ws:
            snap = await next_frame(ws)
            await coord.send(OPERATOR, "alpha", "seen")
            seen = await next_frame(ws)
        last = seen["event"]["seq"]
        missed = [(await coord.send(OPERATOR, "alpha", f"missed {i}"))[0] for i in range(4)]
        async with raw_stream(hive, token=token_of(hive), resume=ResumePoint(last, snap["epoch"])) as ws:
            resumed = await next_frame(ws)
            assert resumed == {"type": "resumed", "seq": last, "epoch": coord.epoch}
            replayed = [await next_frame(ws) for _ in range(4)]
            assert [f["event"]["body"] for f in replayed] == [m.body for m in missed]
            assert [f["event"]["seq"] for f in replayed] == [last + 1, last + 2, last + 3, last + 4]
            await coord.send(OPERATOR, "alpha", "live")
            live = await next_frame(ws)
            assert live["event"]["body"] == "live" and live["event"]["seq"] == last + 5


async def test_client_reconnects_and_resumes_without_gaps_or_duplicates(config: Config) -> None:
    async with running_hive(config) as hive:
        coord = hive.coordinator
        await coord.record_spawn("alpha")
        async with open_dashboard_client(url_of(hive)) as client:
            assert isinstance(await client.next_update(), Snapshot)
            await coord.send(OPERATOR, "alpha", "one")
            first = await client.next_update()
            assert isinstance(first, SentEvent)
            await client.reconnect()
            for i in range(3):
                await coord.send(OPERATOR, "alpha", f"while away {i}")
            with trio.fail_after(5):
                resumed = await client.next_update()
                assert isinstance(resumed, ResumedFrame) and resumed.seq == first.seq
                after = [await client.next_update() for _ in range(3)]
            assert [e.seq for e in after] == [first.seq + 1, first.seq + 2, first.seq + 3]  # type: ignore[union-attr]
            assert client.snapshots == 1 and client.resumes == 1 and client.connections == 2
            assert [e.body for e in client.state.log] == ["one", "while away 0", "while away 1", "while away 2"]


@pytest.mark.parametrize("why", ["ring overflowed", "other epoch", "seq from the future"])
async def test_resume_that_cannot_be_honoured_gets_a_fresh_snapshot(config: Config, why: str) -> None:
    async with running_hive(config, event_ring=8) as hive:
        coord = hive.coordinator
        await coord.record_spawn("alpha")
        await coord.send(OPERATOR, "alpha", "first")
        point = ResumePoint(1, coord.epoch)
        if why == "ring overflowed":
            for i in range(20):
                await coord.send(OPERATOR, "alpha", f"flood {i}")
        elif why == "other epoch":
            point = ResumePoint(1, "an-old-daemon-run")
        else:
            point = ResumePoint(999, coord.epoch)
        async with raw_stream(hive, token=token_of(hive), resume=point) as ws:
            frame = await next_frame(ws)
            assert frame["type"] == "snapshot"
            assert frame["seq"] == coord.current_seq()


@pytest.mark.slow
async def test_a_slow_client_is_resynced_while_a_fast_client_keeps_up(config: Config) -> None:
    async with running_hive(config, subscriber_buffer=16) as hive:
        coord = hive.coordinator
        body = "x" * 32 * 1024
        async with (
            open_dashboard_client(url_of(hive)) as fast,
            open_dashboard_client(url_of(hive), buffer=1) as slow,
        ):
            fast_seqs: list[int] = []
            assert isinstance(await fast.next_update(), Snapshot)

            async def read_fast() -> None:
                async for update in fast:
                    assert not isinstance(update, Snapshot), "the fast client must never be resynced"
                    fast_seqs.append(update.seq)  # type: ignore[union-attr]

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_fast)
                batches = 0
                # Emit in batches the fast client keeps up with, until the stalled one overflows.
                while coord._hub.dropped_subscribers == 0:
                    batches += 1
                    assert batches < 400, "the stalled client was never dropped"
                    for _ in range(8):
                        coord._hub.emit(SentEvent(sender="alpha", recipient="beta", body=body, at=time.time()))
                    target = coord.current_seq()
                    with trio.fail_after(10):
                        await fast.wait_until(lambda s, target=target: s.seq >= target)
                dropped_at = coord.current_seq()
                # Now let the slow client read: it catches up through a fresh snapshot.
                slow_updates = []
                with trio.fail_after(10):
                    async for update in slow:
                        slow_updates.append(update)
                        if slow.state.seq >= dropped_at and isinstance(update, Snapshot):
                            break
                nursery.cancel_scope.cancel()

            assert fast_seqs == list(range(1, dropped_at + 1))
            assert fast.snapshots == 1
            assert isinstance(slow_updates[0], Snapshot)
            resync = slow_updates[-1]
            assert isinstance(resync, Snapshot) and resync.seq >= dropped_at
            assert slow.snapshots == 2
            middle = [u.seq for u in slow_updates[1:-1]]  # type: ignore[union-attr]
            assert middle == sorted(set(middle)) and all(s <= resync.seq for s in middle)


async def test_wrong_or_missing_token_and_foreign_origin_are_refused(config: Config) -> None:
    async with running_hive(config) as hive:
        with pytest.raises(ConnectionRejected) as wrong:
            async with raw_stream(hive, token="not-the-token"):
                pass
        assert wrong.value.status_code == 401
        with pytest.raises(ConnectionRejected) as missing:
            async with raw_stream(hive, token=None):
                pass
        assert missing.value.status_code == 401
        with pytest.raises(ConnectionRejected) as foreign:
            async with raw_stream(hive, token=token_of(hive), headers=[(b"Origin", b"http://evil.example")]):
                pass
        assert foreign.value.status_code == 403
        with pytest.raises(DashboardRefused, match="token"):
            async with open_dashboard_client(url_of(hive).replace("token=", "token=x")):
                pass
        # The page's own origin is welcome, and so is the session cookie the page sets.
        base = hive.dashboard_url
        assert base is not None
        own_origin = base.rstrip("/").encode()
        async with raw_stream(hive, token=token_of(hive), headers=[(b"Origin", own_origin)]) as ws:
            assert (await next_frame(ws))["type"] == "snapshot"
        page = await http_get(url_of(hive))
        assert page.status == 200
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        session = {"Cookie": cookie.split(";")[0]}
        assert (await http_get(base, headers=session)).status == 200  # the cookie now authorises the page
        assert (await http_get(f"{base}api/state", headers=session)).status == 200
        async with raw_stream(hive, headers=[(b"Cookie", session["Cookie"].encode()), (b"Origin", own_origin)]) as ws:
            assert (await next_frame(ws))["type"] == "snapshot"
        assert (await http_get(base)).status == 401
        assert (await http_get(base, params={"token": "bad"})).status == 403
        # A DNS-rebinding page reaches us under its own name; a loopback dashboard ignores it.
        assert (await http_get(url_of(hive), headers={"Host": "evil.example"})).status == 421


async def test_approve_answer_and_send_over_the_socket(config: Config) -> None:
    # The double resolves an apply_commit approval without a git history; the real Lifecycle is
    # exercised in test_approve_deny_and_lifecycle_with_the_real_lifecycle.
    async with running_hive(config, lifecycle=RecordingLifecycle) as hive:
        coord = hive.coordinator
        await coord.record_spawn("alpha")
        approval = await add_pending_approval(coord, "alpha")
        question = await coord.ask("alpha", "Which region?", options=["eu", "us", "ap"], multi=True)
        async with open_dashboard_client(url_of(hive), buffer=float("inf")) as client:
            assert set(client.state.approvals) == {approval.id}
            assert set(client.state.questions) == {question.id}

            result = await client.action("approve", id=approval.id, note="looks right")
            assert result["status"] == "approved" and result["note"] == "looks right"
            await client.wait_until(lambda s: approval.id not in s.approvals)
            with pytest.raises(ActionFailed, match="already approved"):
                await client.action("deny", id=approval.id)

            answered = await client.action("answer", id=question.id, answer=["eu", "ap"])
            assert answered["answer"] == "eu, ap" and answered["answerer"] == OPERATOR
            await client.wait_until(lambda s: question.id not in s.questions)

            sent = await client.action("send", to="alpha", body="please rebase")
            assert len(sent["ids"]) == 1
            await client.wait_until(lambda s: any(e.body == "please rebase" for e in s.log))

            with pytest.raises(ActionFailed, match="unknown agent 'ghost'"):
                await client.action("send", to="ghost", body="hello?")
            with pytest.raises(ActionFailed, match="no question #999"):
                await client.action("answer", id=999, answer="x")

        kinds = [type(e) for e in coord.replay_since(0) or []]
        assert ApprovalResolvedEvent in kinds and QuestionResolvedEvent in kinds and SentEvent in kinds
        stored = await coord.get_approval(approval.id)
        assert stored.status is ApprovalStatus.APPROVED and stored.note == "looks right"
        inbox = await coord.recent_messages("alpha")
        bodies = [m.body for m in inbox]
        assert "please rebase" in bodies
        assert any('"event":"question_answered"' in b and "eu, ap" in b for b in bodies)
        manager_inbox = await coord.recent_messages("manager")
        assert any('"event":"approval_resolved"' in m.body for m in manager_inbox)


@pytest.mark.slow
async def test_approve_deny_and_lifecycle_with_the_real_lifecycle(config: Config) -> None:
    """The operator's buttons against the real `Lifecycle`: real child processes, real spawn approvals."""
    async with running_hive(
        config, lifecycle=True, agent_command="exec sleep 3600", stop_grace=2.0, shutdown_grace=3.0
    ) as hive:
        coord = hive.coordinator
        wanted = await coord.ops.request_spawn("beta", "a reviewer for alpha", requested_by="manager")
        unwanted = await coord.ops.request_spawn("gamma", "another one", requested_by="manager")
        async with open_dashboard_client(url_of(hive), buffer=float("inf")) as client:
            assert set(client.state.approvals) == {wanted.id, unwanted.id}
            with trio.fail_after(20):
                approved = await client.action("approve", id=wanted.id, note="welcome")
                assert approved["status"] == "approved"
                await client.wait_until(lambda s: "beta" in s.agents and s.agents["beta"].running)
                denied = await client.action("deny", id=unwanted.id, note="one is enough")
                assert denied["status"] == "denied"
                await client.wait_until(lambda s: not s.approvals)

                await client.action("stop", name="beta")
                await client.wait_until(lambda s: not s.agents["beta"].running and "beta" not in s.transients)
                await client.action("start", name="beta")
                await client.wait_until(lambda s: s.agents["beta"].running and "beta" not in s.transients)
                with pytest.raises(ActionFailed, match="gamma"):
                    await client.action("restart", name="gamma")
        kinds = [type(e).tag_value for e in coord.replay_since(0) or []]
        for kind in ("approval_resolved", "transient_set", "transient_cleared", "container_state_changed"):
            assert kind in kinds, kind
        assert (await coord.get_approval(unwanted.id)).note == "one is enough"


async def test_lifecycle_buttons_spin_and_survive_the_operator_leaving(config: Config) -> None:
    async with running_hive(config, lifecycle=partial(RecordingLifecycle, gate=trio.Event())) as hive:
        coord = hive.coordinator
        lifecycle = coord.ops
        assert isinstance(lifecycle, RecordingLifecycle)
        await coord.record_spawn("alpha")
        async with open_dashboard_client(url_of(hive), buffer=float("inf")) as client:
            with trio.fail_after(5):
                async with trio.open_nursery() as nursery:

                    async def restart() -> None:
                        with pytest.raises(ConnectionLost):
                            await client.action("restart", name="alpha")

                    nursery.start_soon(restart)
                    await client.wait_until(lambda s: s.transients.get("alpha") is not None)
                    with pytest.raises(ActionFailed, match="busy restarting"):
                        await client.action("stop", name="alpha")
                    # The operator closes the tab mid-restart: the restart is not cancelled.
                    client.close()
                    await client.reconnect()
            assert lifecycle.calls == [("restart", "alpha")]
        with coord.subscribe() as sub, trio.fail_after(5):
            lifecycle.gate.set()  # type: ignore[union-attr]
            async for event in sub:
                if isinstance(event, TransientClearedEvent):
                    break
        assert lifecycle.finished == [("restart", "alpha")]
        kinds = [type(e) for e in coord.replay_since(0) or []]
        assert kinds.count(TransientSetEvent) == 1 and kinds.count(TransientClearedEvent) == 1


async def test_dashboard_spawn_and_destroy_in_a_bare_hive_work_as_host_sock_does(config: Config) -> None:
    # One BareLifecycle behind both surfaces: a bare spawn is a roster row and a live socket.
    async with running_hive(config) as hive, open_dashboard_client(url_of(hive), buffer=float("inf")) as client:
        coord = hive.coordinator
        spawned = await client.action("spawn", name="gamma")
        assert spawned["name"] == "gamma"
        assert coord.is_registered("gamma") and coord.paths.agent_socket("gamma").exists()
        await client.wait_until(lambda s: "gamma" in s.agents)
        with pytest.raises(ActionFailed, match="already exists"):
            await client.action("spawn", name="gamma")
        assert await client.action("destroy", name="gamma") is None
        await client.wait_until(lambda s: "gamma" not in s.agents)
        assert not coord.is_registered("gamma") and not coord.paths.agent_socket("gamma").exists()
        assert await coord.tombstones() == ["gamma"]
        with pytest.raises(ActionFailed, match="unknown agent 'gamma'"):
            await client.action("destroy", name="gamma")
        with pytest.raises(ActionFailed, match="lifecycle backend"):
            await client.action("destroy", name="gamma", purge=True)


async def test_cancel_transient_and_lifecycle_errors_are_results_not_crashes(config: Config) -> None:
    async with running_hive(config) as hive, open_dashboard_client(url_of(hive), buffer=float("inf")) as client:
        with pytest.raises(ActionFailed, match="without a lifecycle backend"):
            await client.action("start", name="alpha")
        with pytest.raises(ActionFailed, match="nothing is in flight"):
            await client.action("cancel_transient", name="alpha")
    async with running_hive(config, lifecycle=partial(RecordingLifecycle, gate=trio.Event())) as hive:
        coord = hive.coordinator
        async with open_dashboard_client(url_of(hive), buffer=float("inf")) as client:
            await coord.record_spawn("alpha")
            async with trio.open_nursery() as nursery:

                async def start() -> None:
                    # A cancelled action is reported as done: cancel_transient's scope ends it cleanly.
                    await client.action("start", name="alpha")

                nursery.start_soon(start)
                await client.wait_until(lambda s: "alpha" in s.transients)
                assert await client.action("cancel_transient", name="alpha") is None
                await client.wait_until(lambda s: "alpha" not in s.transients)
            with pytest.raises(ActionFailed, match=r"agent name"):
                await client.action("restart", name="../etc")


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"op": "launch_missiles", "req": 7}', "unknown op 'launch_missiles'"),
        ('{"op": "approve", "req": 8}', "required field missing @ id"),
        ('{"op": "send", "to": "alpha", "body": 5, "req": "s"}', "expected str"),
        ('{"req": 9}', "missing 'op'"),
    ],
)
async def test_malformed_frames_get_clear_errors_and_the_connection_stays(
    config: Config, frame: str, expected: str
) -> None:
    async with running_hive(config) as hive:
        async with raw_stream(hive, token=token_of(hive)) as ws:
            assert (await next_frame(ws))["type"] == "snapshot"
            await ws.send_message(frame)
            result = await next_frame(ws)
            assert result["type"] == "result" and result["ok"] is False
            assert expected in result["error"]
            request = json.loads(frame) if frame.startswith('{"') else None
            if isinstance(request, dict) and "req" in request:
                assert result["req"] == request["req"]
            await ws.send_message(b'{"op": "send"}')
            binary = await next_frame(ws)
            assert "text frames" in binary["error"]
            await ws.send_message(json.dumps({"op": "send", "to": "operator", "body": "still here", "req": 1}))
            while (reply := await next_frame(ws))["type"] != "result":
                pass
            assert reply == {"type": "result", "req": 1, "ok": True, "error": None, "result": {"ids": [1]}}


async def test_an_oversized_frame_closes_only_that_connection(config: Config) -> None:
    async with running_hive(config, max_frame_bytes=4096) as hive:
        coord = hive.coordinator
        async with (
            raw_stream(hive, token=token_of(hive)) as victim,
            open_dashboard_client(url_of(hive), buffer=float("inf")) as bystander,
        ):
            assert (await next_frame(victim))["type"] == "snapshot"
            await victim.send_message(json.dumps({"op": "send", "to": "operator", "body": "x" * 10_000}))
            with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
                while True:
                    await victim.get_message()
            assert closed.value.reason.code == 1009
            assert (await bystander.action("send", to="operator", body="fine"))["ids"]
        assert await coord.inbox_depth(OPERATOR) == 1


async def test_shutdown_closes_websockets_with_1001_promptly(config: Config) -> None:
    async with trio.open_nursery() as outer:
        async with running_hive(config) as hive:
            coord = hive.coordinator
            url_file = coord.paths.dashboard_url_file
            assert url_file.read_text().strip() == hive.dashboard_url
            # Opened in a nursery outside the hive, so the socket outlives the daemon's exit.
            ws = await connect_websocket_url(outer, stream_url(url_of(hive), token=None, resume=None))
            assert (await next_frame(ws))["type"] == "snapshot"
            started = trio.current_time()
        elapsed = trio.current_time() - started
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 1001
        assert elapsed < 1.0, f"shutdown took {elapsed:.2f}s"
        assert not url_file.exists()


async def test_token_is_private_stable_and_printed_in_the_url(config: Config) -> None:
    async with running_hive(config) as hive:
        token_path = hive.coordinator.paths.dashboard_token
        mode = stat.S_IMODE(os.stat(token_path).st_mode)
        assert mode == 0o600
        token = token_of(hive)
        assert len(token) >= 40
        url = dashboard_url(hive.config)
        assert url == f"{hive.dashboard_url}?token={token}"
    async with running_hive(config) as again:
        assert token_of(again) == token
    # With the daemon down, the URL falls back to the configured address.
    assert dashboard_url(hive.config) == f"http://127.0.0.1:0/?token={token}"


async def test_a_public_bind_must_be_asked_for(config: Config, short_tmp: Path) -> None:
    with pytest.RaisesGroup(pytest.RaisesExc(HiveError, match="dashboard_public"), flatten_subgroups=True):
        async with running_hive(config, dashboard_host="0.0.0.0"):
            pass
    async with running_hive(config, dashboard_host="0.0.0.0", dashboard_public=True) as hive:
        async with raw_stream(hive, token=token_of(hive)) as ws:
            assert (await next_frame(ws))["type"] == "snapshot"
        # A public dashboard cannot know its names, so Host is not checked; the token still is.
        page = await http_get(url_of(hive), headers={"Host": "hive.example:1"})
        assert page.status == 200


async def test_port_in_use_is_a_clear_error(config: Config) -> None:
    async with running_hive(config) as first:
        assert first.dashboard_url is not None
        port = int(first.dashboard_url.rsplit(":", 1)[1].strip("/"))
        other = Config(
            state_dir=config.state_dir.parent / "other-state",
            runtime_dir=config.runtime_dir.parent / "other-run",
            dashboard_port=port,
            admin_group=None,
        )
        in_use = pytest.RaisesExc(HiveError, match=f"cannot serve the dashboard on 127.0.0.1:{port}: Address")
        with pytest.RaisesGroup(in_use, flatten_subgroups=True):
            async with open_hive(other):
                pass


@pytest.mark.slow
@pytest.mark.parametrize("stall_timeout", [1.0, 30.0])
async def test_a_stalled_client_is_cut_by_the_send_timeout_and_never_holds_others(
    config: Config, stall_timeout: float, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer that reads nothing holds only its own task: its write is cut after `stall_timeout`."""
    cfg = dashboard_config(config, subscriber_buffer=8, shutdown_grace=0.5)
    async with trio.open_nursery() as outer:
        async with open_coordinator(cfg, lifecycle=BareLifecycle) as coord:
            base = await coord.root_nursery.start(partial(serve_dashboard, coord, stall_timeout=stall_timeout))
            url = f"{base}?token={coord.paths.dashboard_token.read_text().strip()}"
            # Connected from outside the daemon's scope and never read: a hung browser tab.
            stalled = await connect_websocket_url(outer, stream_url(url, token=None, resume=None))
            async with open_dashboard_client(url, buffer=float("inf")) as healthy:
                body = "y" * 64 * 1024
                with trio.fail_after(20):
                    while coord._hub.dropped_subscribers == 0:
                        coord._hub.emit(SentEvent(sender="alpha", recipient="beta", body=body, at=time.time()))
                        await healthy.wait_until(lambda s: s.seq == coord.current_seq())
                # The hub let go of it at once; its task is stuck in a write until the send timeout.
                await trio.sleep(2.0)
                coord._hub.emit(SentEvent(sender="alpha", recipient="beta", body="after", at=time.time()))
                await healthy.wait_until(lambda s: s.seq == coord.current_seq())
                assert healthy.snapshots == 1
            cut_before_shutdown = any("read nothing" in r.getMessage() for r in caplog.records)
            started = trio.current_time()
        shutdown = trio.current_time() - started
        # The stalled peer finds its connection reset, not closed with a close frame.
        with pytest.raises(ConnectionClosed) as closed, trio.fail_after(10):
            while True:
                await stalled.get_message()
        assert closed.value.reason.code == 1006
    if stall_timeout < 2.0:
        # The send timeout had already cut the stalled socket, so nothing was left to wait for.
        assert cut_before_shutdown
        assert shutdown < 0.5
    else:
        # Still stuck when the daemon stopped: it is cut at the shutdown deadline, not waited for.
        assert not cut_before_shutdown
        assert 0.5 <= shutdown < 1.5


async def test_an_ipv6_loopback_dashboard(config: Config) -> None:
    async with running_hive(config, dashboard_host="::1") as hive:
        assert hive.dashboard_url is not None and hive.dashboard_url.startswith("http://[::1]:")
        own_origin = hive.dashboard_url.rstrip("/").encode()
        async with raw_stream(hive, token=token_of(hive), headers=[(b"Origin", own_origin)]) as ws:
            assert (await next_frame(ws))["type"] == "snapshot"
        assert (await http_get(url_of(hive))).status == 200


async def test_clients_vanishing_mid_snapshot_leave_nothing_behind(config: Config) -> None:
    async with running_hive(config) as hive:
        coord = hive.coordinator
        await coord.record_spawn("alpha")
        for i in range(40):  # a snapshot of ~2.4 MB, so clients leave while it is being written
            await coord.send("alpha", OPERATOR, f"{i} " + "b" * 60_000)
        for i in range(10):
            with trio.CancelScope() as scope:
                async with raw_stream(hive, token=token_of(hive)) as ws:
                    if i % 2:
                        await ws.get_message()  # half leave after their snapshot, half before a byte
                    scope.cancel()  # gone without a close handshake
        with trio.fail_after(5):
            for _ in range(500):
                if coord._hub.subscriber_count == 0:
                    break
                await trio.sleep(0.01)
        assert coord._hub.subscriber_count == 0
        async with open_dashboard_client(url_of(hive)) as client:
            assert len(client.state.log) == 40
            assert (await client.action("send", to="alpha", body="still fine"))["ids"]


async def test_shutdown_finishes_the_frame_in_flight_then_sends_1001(config: Config) -> None:
    """Ending a stream never cuts a frame half-way: a slow reader gets the whole snapshot, then 1001."""
    stop = trio.Event()
    ready = trio.Event()
    hive_box: list[Hive] = []

    async def run_hive() -> None:
        async with running_hive(config, shutdown_grace=10.0) as hive:
            await hive.coordinator.record_spawn("alpha")
            for i in range(40):  # a snapshot of ~2.4 MB
                await hive.coordinator.send("alpha", OPERATOR, f"{i} " + "s" * 60_000)
            hive_box.append(hive)
            ready.set()
            await stop.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_hive)
        await ready.wait()
        hive = hive_box[0]
        assert hive.dashboard_url is not None
        parts = urlsplit(stream_url(hive.dashboard_url, token=token_of(hive), resume=None))
        assert parts.hostname is not None and parts.port is not None
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect((parts.hostname, parts.port))
        stream = trio.SocketStream(sock)
        client = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(client.send(Request(host=parts.netloc, target=f"{parts.path}?{parts.query}")))
        # Ordering only, not timing: by then the server is stuck inside the 2.4 MB snapshot frame (the
        # assertions hold either way), and the daemon is told to stop while that frame is in flight.
        await trio.sleep(0.5)
        stop.set()
        await trio.sleep(0.2)
        events: list[object] = []
        with trio.fail_after(10):
            while not any(isinstance(e, CloseConnection) for e in events):
                data = await stream.receive_some(65536)
                client.receive_data(data or None)
                events.extend(client.events())
        await stream.aclose()
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "AcceptConnection" and kinds[-1] == "CloseConnection", kinds
    text = "".join(e.data for e in events if isinstance(e, TextMessage))
    snapshot = json.loads(text)
    assert snapshot["type"] == "snapshot" and len(snapshot["messages"]) == 40
    close = events[-1]
    assert isinstance(close, CloseConnection) and close.code == 1001

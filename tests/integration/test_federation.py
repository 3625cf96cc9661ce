"""Two in-process hives, each with its own real embedded nats-server, linked by leafnode on loopback.

Real time throughout (NATS is another process), each wait bounded; the whole module runs in ~15 s.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
import trio
from federation_support import LEAF_PASSWORD, inbox, linked_pair, sigkill_nats, wait_until

from hive_trio.errors import InvalidRequest
from hive_trio.federation.server import find_binary, free_port, wait_healthy
from hive_trio.federation.service import Federation
from hive_trio.records import SYSTEM_SENDER, WireMessage, to_json
from hive_trio.rules.federation import FederationConfig, daemon_permissions, daemon_user
from hive_trio.testing import InProcessHive, open_test_hive

pytestmark = pytest.mark.timeout(60)


def fed_of(hive: InProcessHive) -> Federation:
    service = hive.coordinator.federation
    assert isinstance(service, Federation)
    return service


@asynccontextmanager
async def open_fed_hive(
    root: Path, fed: FederationConfig, agents: list[str], **settings: Any
) -> AsyncIterator[InProcessHive]:
    await trio.Path(root).mkdir(exist_ok=True)
    async with open_test_hive(agents=agents, directory=root, federation=fed, **settings) as hive:
        yield hive


@asynccontextmanager
async def open_pair(
    tmp: Path, *, b_settings: dict[str, Any] | None = None, **common: Any
) -> AsyncIterator[tuple[InProcessHive, InProcessHive]]:
    fed_a, fed_b = linked_pair(**common)
    async with (
        open_fed_hive(tmp / "b", fed_b, ["bob", "carol"], **(b_settings or {})) as hb,
        open_fed_hive(tmp / "a", fed_a, ["alice"]) as ha,
    ):
        await wait_linked(ha, hb)
        yield ha, hb


async def wait_linked(ha: InProcessHive, hb: InProcessHive) -> None:
    """Both rosters heard: the leafnode is up in both directions."""

    async def linked() -> bool:
        return bool(fed_of(ha).remote_agents()) and bool(fed_of(hb).remote_agents())

    await wait_until(linked, seconds=15)


async def bodies(hive: InProcessHive, name: str) -> list[tuple[str, str]]:
    return inbox(hive.config.state_dir / "hive.db", name)


async def test_a_message_crosses_the_link_with_its_origin_and_the_reply_comes_back(short_tmp: Path) -> None:
    async with open_pair(short_tmp) as (ha, hb):
        async with ha.open_agent("alice") as alice, hb.open_agent("bob") as bob:
            sent = await alice.call("send", to="bob@b", body="hello from a")
            assert "id" in sent
            got = await bob.call("recv", wait_seconds=10)
            assert [(m["from"], m["body"]) for m in got["messages"]] == [("alice@a", "hello from a")]
            await bob.call("send", to="alice@a", body="hi back")
            back = await alice.call("recv", wait_seconds=10)
            assert [(m["from"], m["body"]) for m in back["messages"]] == [("bob@b", "hi back")]
            # list_agents shows the other hive's agents, with their hive.
            listed = await alice.call("list_agents")
            assert {(r["name"], r["hive"]) for r in listed["remote_agents"]} == {("bob", "b"), ("carol", "b")}
        # host.sock status: remote agents and the link-state line.
        status = await ha.host("agent_status")
        assert status["link"]["hive"] == "a" and status["link"]["connected"] is True
        await wait_until(lambda: _depth_is(ha, 0), seconds=5)
        snap = await ha.coordinator.snapshot()
        assert snap.link is not None and snap.link.last_contact_at is not None
        assert {r.address for r in snap.remote_agents} == {"bob@b", "carol@b"}


async def _depth_is(hive: InProcessHive, depth: int) -> bool:
    state = await hive.coordinator.link_state()
    return state is not None and state.outbox_depth == depth


async def test_unknown_remote_recipient_comes_back_undeliverable(short_tmp: Path) -> None:
    async with open_pair(short_tmp) as (ha, _hb):
        async with ha.open_agent("alice") as alice:
            sent = await alice.call("send", to="nobody@b", body="anyone?")
            got = await alice.call("recv", wait_seconds=10)
            (msg,) = got["messages"]
            assert msg["from"] == SYSTEM_SENDER
            event = json.loads(msg["body"])
            assert event["event"] == "undeliverable"
            assert event["id"] == sent["id"] and event["to"] == "nobody@b"
            assert "no agent 'nobody'" in event["reason"]


async def test_a_body_over_the_remote_limit_comes_back_undeliverable(short_tmp: Path) -> None:
    async with open_pair(short_tmp, b_settings={"max_body_bytes": 100}) as (ha, hb):
        async with ha.open_agent("alice") as alice:
            await alice.call("send", to="bob@b", body="x" * 500)
            got = await alice.call("recv", wait_seconds=10)
            event = json.loads(got["messages"][0]["body"])
            assert event["event"] == "undeliverable" and "100-byte limit" in event["reason"]
        assert await bodies(hb, "bob") == []


async def test_broadcast_is_local_unless_addressed_to_a_hive(short_tmp: Path) -> None:
    async with open_pair(short_tmp) as (ha, hb):
        await ha.coordinator.send("alice", "*", "local only")
        await ha.coordinator.send("alice", "*@b", "to all of b")

        async def both() -> bool:
            return len(await bodies(hb, "bob")) == 1 and len(await bodies(hb, "carol")) == 1

        await wait_until(both, seconds=10)
        assert await bodies(hb, "bob") == [("alice@a", "to all of b")]


async def test_remote_sends_without_federation_are_refused(short_tmp: Path) -> None:
    async with open_test_hive(agents=["alice"], directory=short_tmp) as hive:
        with pytest.raises(InvalidRequest, match="not federated"):
            await hive.coordinator.send("alice", "bob@b", "hi")
        with pytest.raises(InvalidRequest, match="hive name"):
            await hive.coordinator.send("alice", "bob@B!", "hi")


async def test_an_isolated_agent_is_kept_off_the_link(short_tmp: Path) -> None:
    async with open_pair(short_tmp, isolated_agents=["carol"]) as (ha, hb):
        # carol (on b) can neither send out, nor be seen, nor be reached from a.
        with pytest.raises(InvalidRequest, match="kept off"):
            await hb.coordinator.send("carol", "alice@a", "hi")
        assert {r.name for r in fed_of(ha).remote_agents()} == {"bob"}
        async with ha.open_agent("alice") as alice:
            await alice.call("send", to="carol@b", body="psst")
            got = await alice.call("recv", wait_seconds=10)
            assert json.loads(got["messages"][0]["body"])["event"] == "undeliverable"
        await hb.coordinator.send("bob", "carol", "local is fine")
        assert await bodies(hb, "carol") == [("bob", "local is fine")]


async def test_spoofed_sender_and_foreign_subjects_are_refused(short_tmp: Path) -> None:
    """A hive's own credentials: a payload claiming another sender changes nothing (the subject decides),
    a `system` sender is never a message, and another hive's subjects are refused by NATS itself."""
    async with open_pair(short_tmp) as (ha, hb):
        conf = json.loads((ha.config.state_dir / "nats" / "nats.conf").read_text())
        password = (ha.config.state_dir / "nats" / "daemon.password").read_text().strip()
        url = "nats://" + conf["listen"]
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        async def attack() -> list[str]:
            nc = await nats.connect(url, user="hive-a", password=password, error_cb=on_error)
            js = nc.jetstream()
            outcomes = []
            spoof = json.loads(to_json(WireMessage(id=9001, body="trust me", sent_at=0.0)))
            spoof["from"] = "system"
            await js.publish("fed.a.b.alice.bob", json.dumps(spoof).encode(), headers={"Nats-Msg-Id": "a:9001"})
            # A `system` sender is only ever a bounce; one about a message never sent is ignored.
            await js.publish(
                "fed.a.b.system.bob", b'{"id": 1, "reason": "forged"}', headers={"Nats-Msg-Id": "a:forged"}
            )
            for subject in ("fed.c.b.mallory.bob", "roster.b"):
                try:
                    await js.publish(subject, b'{"id": 9002, "body": "as c", "sent_at": 0}', timeout=1)
                    outcomes.append("accepted")
                except (nats.errors.Error, Exception):
                    outcomes.append("refused")
            await nc.close()
            return outcomes

        # nats-py is asyncio: run the attacker on the federation's own loop thread.
        outcomes = await fed_of(ha).link.aio.run(attack)
        assert outcomes == ["refused", "refused"]
        assert any("permissions violation" in str(e) for e in errors)

        async def arrived() -> bool:
            return len(await bodies(hb, "bob")) >= 1

        await wait_until(arrived, seconds=10)
        await trio.sleep(0.5)  # give anything else time to (wrongly) arrive
        assert await bodies(hb, "bob") == [("alice@a", "trust me")]


@pytest.mark.slow
async def test_nats_servers_sigkilled_mid_burst_lose_nothing_and_duplicate_nothing(short_tmp: Path) -> None:
    total = 150
    async with open_pair(short_tmp) as (ha, hb):
        acked: list[str] = []

        async def burst() -> None:
            for i in range(total):
                await ha.coordinator.send("alice", "bob@b", f"m{i}")
                acked.append(f"m{i}")
                await trio.sleep(0.004)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(burst)
            await trio.sleep(0.15)
            sigkill_nats(ha.config.state_dir)  # the sender's server
            await trio.sleep(0.3)
            sigkill_nats(hb.config.state_dir)  # the receiver's server

        async def all_in() -> bool:
            return len(await bodies(hb, "bob")) >= total

        await wait_until(all_in, seconds=30)
        await trio.sleep(0.5)
        got = [body for _, body in await bodies(hb, "bob")]
        assert sorted(got) == sorted(acked)  # none lost, none twice
        assert got == acked  # and in send order
        await wait_until(lambda: _depth_is(ha, 0), seconds=5)


@pytest.mark.slow
async def test_a_hive_down_for_a_while_drains_the_outbox_when_it_returns(short_tmp: Path) -> None:
    fed_a, fed_b = linked_pair()
    async with open_fed_hive(short_tmp / "a", fed_a, ["alice"]) as ha:
        async with open_fed_hive(short_tmp / "b", fed_b, ["bob"]) as hb:
            await wait_linked(ha, hb)
        # b (daemon and server) is gone: sends are acknowledged into a's outbox.
        for i in range(40):
            await ha.coordinator.send("alice", "bob@b", f"late {i}")
        await trio.sleep(0.5)
        state = await ha.coordinator.link_state()
        assert state is not None and state.outbox_depth == 40 and state.oldest_unforwarded_at is not None
        async with open_fed_hive(short_tmp / "b", fed_b, []) as hb:
            await wait_until(lambda: _depth_is(ha, 0), seconds=20)

            async def all_in() -> bool:
                return len(await bodies(hb, "bob")) >= 40

            await wait_until(all_in, seconds=10)
            await trio.sleep(0.3)
            got = [body for _, body in await bodies(hb, "bob")]
            assert got == [f"late {i}" for i in range(40)]


async def test_a_rogue_server_with_a_peers_leaf_credentials_cannot_speak_for_another_hive(short_tmp: Path) -> None:
    """Trust is enforced where the link enters a hive: a server configured by hive a's operator without
    any permissions, dialling b as `leaf-a`, can inject `fed.a.>` but never `fed.c.>`."""
    async with open_pair(short_tmp) as (ha, hb):
        b_conf = json.loads((hb.config.state_dir / "nats" / "nats.conf").read_text())
        leaf_url = f"nats-leaf://leaf-a:{LEAF_PASSWORD}@{b_conf['leafnodes']['listen']}"
        port, store = free_port(), short_tmp / "rogue"
        await trio.Path(store).mkdir()
        rogue_conf = store / "rogue.conf"
        await trio.Path(rogue_conf).write_text(
            json.dumps({"listen": f"127.0.0.1:{port}", "leafnodes": {"remotes": [{"url": leaf_url}]}})
        )
        binary = find_binary(ha.config.federation)
        proc = await trio.lowlevel.open_process(
            [str(binary), "-c", str(rogue_conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:

            async def attack() -> dict[str, str]:
                nc = await nats.connect(f"nats://127.0.0.1:{port}", error_cb=_quiet)
                js = nc.jetstream()
                out: dict[str, str] = {}
                for _ in range(100):  # until the leafnode is up and b's interest has propagated
                    try:
                        await js.publish(
                            "fed.a.b.mallory.bob", b'{"id": 77, "body": "as a", "sent_at": 0}', timeout=0.2
                        )
                        break
                    except Exception:
                        await asyncio.sleep(0.05)
                else:
                    raise AssertionError("the rogue leafnode never linked to b")
                out["fed.a"] = "accepted"
                try:
                    await js.publish("fed.c.b.mallory.bob", b'{"id": 78, "body": "as c", "sent_at": 0}', timeout=1)
                    out["fed.c"] = "accepted"
                except Exception:
                    out["fed.c"] = "refused"
                await nc.close()
                return out

            outcomes = await fed_of(ha).link.aio.run(attack)
            assert outcomes == {"fed.a": "accepted", "fed.c": "refused"}

            async def arrived() -> bool:
                return len(await bodies(hb, "bob")) >= 1

            await wait_until(arrived, seconds=10)
            await trio.sleep(0.3)
            # It could only ever speak as hive a: the one message it got in says so.
            assert await bodies(hb, "bob") == [("mallory@a", "as a")]
        finally:
            proc.kill()
            await proc.wait()


async def _quiet(exc: Exception) -> None:
    pass


async def test_a_redelivery_past_jetstreams_dedup_is_absorbed_by_the_origin_key(short_tmp: Path) -> None:
    """The same origin message id under two Nats-Msg-Ids (a republish after JetStream's dedup window)
    reaches the inbox once: the (origin hive, origin id) key is what makes it exactly-once."""
    async with open_pair(short_tmp) as (ha, hb):
        password = (ha.config.state_dir / "nats" / "daemon.password").read_text().strip()
        url = "nats://" + json.loads((ha.config.state_dir / "nats" / "nats.conf").read_text())["listen"]
        payload = to_json(WireMessage(id=4242, body="once", sent_at=0.0)).encode()

        async def publish_twice() -> list[bool]:
            nc = await nats.connect(url, user="hive-a", password=password, error_cb=_quiet)
            js = nc.jetstream()
            acks = [
                await js.publish("fed.a.b.alice.bob", payload, headers={"Nats-Msg-Id": mid}) for mid in ("x1", "x2")
            ]
            await nc.close()
            return [bool(a.duplicate) for a in acks]

        assert await fed_of(ha).link.aio.run(publish_twice) == [False, False]  # JetStream stored both

        async def absorbed() -> bool:
            return fed_of(hb).duplicates >= 1

        await wait_until(absorbed, seconds=10)
        assert await bodies(hb, "bob") == [("alice@a", "once")]


async def test_a_server_that_cannot_start_stops_the_hive_with_a_reason(short_tmp: Path) -> None:
    import socket

    from hive_trio.rules.federation import FederationConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        fed = FederationConfig(enabled=True, hive="a", leaf_listen=f"127.0.0.1:{port}")
        with pytest.RaisesGroup(
            pytest.RaisesExc(FederationConfigError, match="nats-server exited"), flatten_subgroups=True
        ):
            async with open_fed_hive(short_tmp / "a", fed, []):
                pass
    with pytest.RaisesGroup(pytest.RaisesExc(FederationConfigError, match="not an executable"), flatten_subgroups=True):
        async with open_fed_hive(short_tmp / "a", FederationConfig(enabled=True, hive="a", nats_server=short_tmp), []):
            pass


async def test_two_hives_on_the_operators_own_server_with_per_hive_users(short_tmp: Path) -> None:
    """Production shape: no embedded server; both hives log in to one nats-server (a stand-in for the
    operator's cluster) with the per-hive permissions docs/FEDERATION.md prints, and talk through it."""
    port, monitor = free_port(), free_port()
    store = short_tmp / "shared"
    await trio.Path(store).mkdir()
    users = [{"user": daemon_user(h), "password": f"pw-{h}", "permissions": daemon_permissions(h)} for h in ("a", "b")]
    conf = {
        "listen": f"127.0.0.1:{port}",
        "http": f"127.0.0.1:{monitor}",
        "jetstream": {"store_dir": str(store)},
        "authorization": {"users": users},
    }
    await trio.Path(store / "nats.conf").write_text(json.dumps(conf))
    binary = find_binary(FederationConfig())
    proc = await trio.lowlevel.open_process(
        [str(binary), "-c", str(store / "nats.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with trio.fail_after(10):
            await wait_healthy(monitor)
        common = {"url": f"nats://127.0.0.1:{port}", "roster_interval": 0.2, "publish_timeout": 0.5, "ack_wait": 2.0}
        fed_a = FederationConfig(enabled=True, hive="a", user="hive-a", password="pw-a", **common)  # type: ignore[arg-type]
        fed_b = FederationConfig(enabled=True, hive="b", user="hive-b", password="pw-b", **common)  # type: ignore[arg-type]
        async with (
            open_fed_hive(short_tmp / "b", fed_b, ["bob"]) as hb,
            open_fed_hive(short_tmp / "a", fed_a, ["alice"]) as ha,
        ):
            await wait_linked(ha, hb)
            assert not (ha.config.state_dir / "nats").exists()  # nothing embedded was started
            async with ha.open_agent("alice") as alice, hb.open_agent("bob") as bob:
                await alice.call("send", to="bob@b", body="via the shared server")
                got = await bob.call("recv", wait_seconds=10)
                assert [(m["from"], m["body"]) for m in got["messages"]] == [("alice@a", "via the shared server")]
                await bob.call("send", to="alice@a", body="and back")
                back = await alice.call("recv", wait_seconds=10)
                assert [m["from"] for m in back["messages"]] == ["bob@b"]

            async def deletes_b() -> str:
                nc = await nats.connect(f"nats://127.0.0.1:{port}", user="hive-a", password="pw-a", error_cb=_quiet)
                try:
                    await nc.jetstream().delete_stream("FED_b")
                    return "deleted"
                except Exception:
                    return "refused"
                finally:
                    await nc.close()

            assert await fed_of(ha).link.aio.run(deletes_b) == "refused"  # one hive cannot touch another's stream
    finally:
        proc.kill()
        await proc.wait()


async def test_a_hive_whose_nats_is_unreachable_still_starts_and_keeps_remote_sends(short_tmp: Path) -> None:
    """The operator's NATS is down at boot: the hive comes up anyway, remote sends wait in the outbox,
    the link line says why, and shutdown is prompt."""
    fed = FederationConfig(enabled=True, hive="a", url=f"nats://127.0.0.1:{free_port()}")
    with trio.fail_after(10):
        async with open_fed_hive(short_tmp / "a", fed, ["alice"]) as ha:
            await ha.coordinator.send("alice", "bob@b", "when the link is back")
            await trio.sleep(0.3)
            state = await ha.coordinator.link_state()
            assert state is not None
            assert (state.connected, state.outbox_depth) == (False, 1)
            assert state.error is not None


async def test_a_hive_that_is_down_with_a_long_queue_does_not_hold_up_the_others(short_tmp: Path) -> None:
    async with open_pair(short_tmp) as (ha, hb):
        for i in range(300):  # more than one forwarder batch, for a hive that never answers
            await ha.coordinator.send("alice", "ghost@c", f"lost {i}")
        await ha.coordinator.send("alice", "bob@b", "still gets through")

        async def arrived() -> bool:
            return await bodies(hb, "bob") == [("alice@a", "still gets through")]

        await wait_until(arrived, seconds=10)
        assert await _depth_is(ha, 300)  # c's messages wait, in the outbox, for as long as it takes

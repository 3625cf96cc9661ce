"""Sans-IO federation: addresses, subjects, settings, the embedded server's config, the outbox store."""

from __future__ import annotations

import json
from pathlib import Path

import apsw
import pytest

from hive_trio.errors import InvalidRequest
from hive_trio.records import HelperEvent, HelperUndeliverable, WireBounce, WireMessage, from_json
from hive_trio.rules.config import ConfigError, load_config
from hive_trio.rules.federation import (
    FederationConfig,
    FederationConfigError,
    LeafPeer,
    LeafRemote,
    RemoteAddress,
    parse_address,
    parse_message_subject,
    render_server_config,
)
from hive_trio.store import outbox
from hive_trio.store.database import migrate


def test_addresses() -> None:
    assert parse_address("bob") is None
    assert parse_address("bob@lab") == RemoteAddress(agent="bob", hive="lab")
    assert parse_address("*@lab") == RemoteAddress(agent="*", hive="lab")
    assert parse_address("*@lab").token == "_all"  # type: ignore[union-attr]
    for bad, reason in [
        ("bob@Lab", "hive name"),
        ("bob@", "hive name is empty"),
        ("a@b@c", "more than one"),
        ("Bob@lab", "not an agent name"),
        ("system@lab", "never receives"),
        ("bob@lab.x", "hive name"),
    ]:
        with pytest.raises(InvalidRequest, match=reason):
            parse_address(bad)


def test_subjects_carry_origin_and_sender_and_refuse_anything_else() -> None:
    s = parse_message_subject("fed.a.b.alice.bob")
    assert (s.origin, s.dest, s.sender, s.recipient_token, s.is_bounce) == ("a", "b", "alice", "bob", False)
    assert parse_message_subject("fed.b.a.system.alice").is_bounce
    for bad in ["fed.a.b.alice", "x.a.b.alice.bob", "fed.A.b.alice.bob", "fed.a.b.Alice.bob", "fed.a.b.alice.*"]:
        with pytest.raises(ValueError):
            parse_message_subject(bad)


def test_settings_are_validated(tmp_path: Path) -> None:
    assert FederationConfig().enabled is False  # the single-host default never starts NATS
    with pytest.raises(FederationConfigError, match="hive must be set"):
        FederationConfig(enabled=True)
    with pytest.raises(InvalidRequest, match="hive name"):
        FederationConfig(hive="Lab")
    with pytest.raises(FederationConfigError, match="exactly one"):
        LeafPeer(hive="x")
    with pytest.raises(FederationConfigError, match="embedded server"):
        FederationConfig(enabled=True, hive="a", url="nats://h:4222", leaf_listen="0.0.0.0:7422")
    path = tmp_path / "c.toml"
    path.write_text('[federation]\nenabled = true\nhive = "lab"\nisolated_agents = ["secret"]\n')
    assert load_config(file=path, env={}).federation.isolated_agents == ["secret"]
    path.write_text("[federation]\nenabeld = true\n")
    with pytest.raises(ConfigError, match="enabeld"):
        load_config(file=path, env={})


def test_the_embedded_server_config_ties_each_hive_to_its_own_subjects(tmp_path: Path) -> None:
    fed = FederationConfig(
        enabled=True,
        hive="lab",
        leaf_listen="0.0.0.0:7422",
        leaf_peers=[LeafPeer(hive="home", password="p1")],
        leaf_remotes=[LeafRemote(url="nats-leaf://hub:7422", password="p@ss", tls_ca=tmp_path / "ca.pem")],
        sync_always=True,
    )
    text = render_server_config(
        fed,
        store_dir=tmp_path,
        client_port=4222,
        monitor_port=8222,
        daemon_password="d",
        peer_passwords={"home": "p1"},
        remote_passwords=["p@ss"],
    )
    conf = json.loads(text)
    assert conf["listen"] == "127.0.0.1:4222" and conf["http"] == "127.0.0.1:8222"  # loopback only
    assert conf["jetstream"] == {"store_dir": str(tmp_path), "domain": "lab", "sync_interval": "always"}
    users = {u["user"]: u for u in conf["authorization"]["users"]}
    assert users["hive-lab"]["permissions"]["publish"]["allow"][:2] == ["fed.lab.>", "roster.lab"]
    home = users["leaf-home"]["permissions"]
    assert home["publish"]["allow"] == ["fed.home.>", "roster.home", "_INBOX.>"]
    assert home["subscribe"]["allow"][0] == "fed.*.home.>"
    (remote,) = conf["leafnodes"]["remotes"]
    assert remote["url"] == "nats-leaf://leaf-lab:p%40ss@hub:7422"
    assert remote["tls"] == {"ca_file": str(tmp_path / "ca.pem")}


@pytest.fixture
def conn(tmp_path: Path) -> apsw.Connection:
    c = apsw.Connection(str(tmp_path / "hive.db"))
    migrate(c)
    now = 1.0
    for name in ("bob", "carol"):
        c.execute("INSERT INTO agents (name, created_at) VALUES (?, ?)", (name, now))
    return c


def test_a_remote_send_commits_its_message_and_outbox_row_together(conn: apsw.Connection) -> None:
    m = outbox.queue_remote_tx(
        conn, origin="a", sender="alice", address=RemoteAddress("bob", "b"), body="hi", now=5.0, max_body_bytes=100
    )
    assert m.recipient == "bob@b"
    (item,) = outbox.pending(conn, limit=10)
    assert (item.subject, item.nats_msg_id, item.message_id) == ("fed.a.b.alice.bob", f"a:{m.id}", m.id)
    assert from_json(item.payload, WireMessage) == WireMessage(id=m.id, body="hi", sent_at=5.0)
    assert outbox.stats(conn).depth == 1
    assert outbox.mark_forwarded_tx(conn, ids=[item.id], now=6.0) == 1
    assert outbox.mark_forwarded_tx(conn, ids=[item.id], now=7.0) == 0
    assert outbox.stats(conn).depth == 0


def test_accept_is_exactly_once_and_bounces_what_it_cannot_deliver(conn: apsw.Connection) -> None:
    subject = parse_message_subject("fed.a.b.alice.bob")
    args = {"me": "b", "now": 1.0, "max_body_bytes": 10, "isolated": {"carol"}, "peer_allowed": True}
    first = outbox.accept_tx(conn, subject=subject, wire=WireMessage(id=7, body="hi", sent_at=0), **args)  # type: ignore[arg-type]
    assert [(m.sender, m.recipient) for m in first.messages] == [("alice@a", "bob")]
    again = outbox.accept_tx(conn, subject=subject, wire=WireMessage(id=7, body="hi", sent_at=0), **args)  # type: ignore[arg-type]
    assert again.duplicate and not again.messages
    cases = [("fed.a.b.alice.nobody", "hi", "no agent 'nobody'"), ("fed.a.b.alice.carol", "hi", "no agent")]
    cases.append(("fed.a.b.alice.bob", "x" * 11, "10-byte limit"))
    for n, (subj, body, reason) in enumerate(cases, start=8):
        got = outbox.accept_tx(
            conn, subject=parse_message_subject(subj), wire=WireMessage(id=n, body=body, sent_at=0), **args
        )  # type: ignore[arg-type]
        assert got.bounced is not None and reason in got.bounced
    bounces = [i for i in outbox.pending(conn, limit=10) if i.kind == "bounce"]
    assert [b.subject for b in bounces] == ["fed.b.a.system.alice"] * 3


def test_only_a_bounce_for_a_message_really_sent_there_reaches_the_sender(conn: apsw.Connection) -> None:
    m = outbox.queue_remote_tx(
        conn, origin="a", sender="bob", address=RemoteAddress("x", "c"), body="hi", now=1.0, max_body_bytes=100
    )
    assert (
        outbox.bounce_received_tx(conn, from_hive="d", sender="bob", bounce=WireBounce(id=m.id, reason="no"), now=2.0)
        is None
    )
    assert (
        outbox.bounce_received_tx(conn, from_hive="c", sender="carol", bounce=WireBounce(id=m.id, reason="no"), now=2.0)
        is None
    )
    notice = outbox.bounce_received_tx(
        conn, from_hive="c", sender="bob", bounce=WireBounce(id=m.id, reason="no x"), now=2.0
    )
    assert notice is not None and notice.recipient == "bob" and notice.sender == "system"
    assert from_json(notice.body, HelperEvent) == HelperUndeliverable(id=m.id, to="x@c", reason="c: no x")
    # Twice is once.
    assert (
        outbox.bounce_received_tx(conn, from_hive="c", sender="bob", bounce=WireBounce(id=m.id, reason="no x"), now=3.0)
        is None
    )


def test_status_prints_remote_agents_and_the_link_state_line() -> None:
    import time

    from hive_trio.cli.operator import federation_lines as _federation_lines

    assert _federation_lines({"agent_statuses": []}) == ""  # not federated: nothing extra
    now = time.time()
    text = _federation_lines(
        {
            "remote_agents": [{"name": "bob", "hive": "b", "running": True, "status_text": "reviewing"}],
            "link": {
                "hive": "a",
                "connected": False,
                "outbox_depth": 3,
                "oldest_unforwarded_at": now - 12,
                "last_contact_at": now - 15,
                "error": "no route",
            },
        }
    )
    assert "bob" in text and "reviewing" in text
    assert "link a: DISCONNECTED, outbox 3 (oldest 12s ago), last contact 15s ago, error: no route" in text


def test_vacuum_forgets_settled_rows_and_old_keys_but_never_a_pending_one(conn: apsw.Connection) -> None:
    kept = outbox.queue_remote_tx(
        conn, origin="a", sender="alice", address=RemoteAddress("bob", "b"), body="x", now=1.0, max_body_bytes=100
    )
    gone = outbox.queue_remote_tx(
        conn, origin="a", sender="alice", address=RemoteAddress("bob", "b"), body="y", now=1.0, max_body_bytes=100
    )
    ids = {i.message_id: i.id for i in outbox.pending(conn, limit=10)}
    outbox.mark_forwarded_tx(conn, ids=[ids[gone.id]], now=2.0)
    subject = parse_message_subject("fed.c.a.x.bob")
    outbox.accept_tx(
        conn,
        subject=subject,
        wire=WireMessage(id=1, body="z", sent_at=0),
        me="a",
        now=2.0,
        max_body_bytes=100,
        isolated=(),
        peer_allowed=True,
    )
    assert outbox.vacuum_tx(conn, older_than=10.0) == 2  # the forwarded row and the dedup key
    assert [i.message_id for i in outbox.pending(conn, limit=10)] == [kept.id]


def test_pending_leaves_out_hives_in_back_off(conn: apsw.Connection) -> None:
    for hive in ("c", "c", "b"):
        outbox.queue_remote_tx(
            conn, origin="a", sender="alice", address=RemoteAddress("x", hive), body="m", now=1.0, max_body_bytes=10
        )
    assert [i.hive for i in outbox.pending(conn, limit=2)] == ["c", "c"]
    assert [i.hive for i in outbox.pending(conn, limit=2, skip_hives={"c"})] == ["b"]

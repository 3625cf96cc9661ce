"""Federation rules: the `[federation]` settings, `agent@hive` addresses, NATS subjects, the server config.

Everything here is pure: it parses and builds strings and never opens a socket or a file (the one
exception is `read_secret`, which the daemon calls at start). The subjects are the trust boundary:
`fed.<origin>.<dest>.<sender>.<recipient>`, and every hive may publish only under `fed.<itself>.>`
(its NATS user's permissions on its own server, and its leafnode user's on each peer), so the origin
and the sender a receiver reads from the subject are facts, not claims.

hyperhive federates through a Matrix homeserver ("swarm"); hive_trio uses NATS JetStream
(docs/DECISIONS.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final
from urllib.parse import quote

import attrs

from hive_trio.errors import HiveError, InvalidRequest
from hive_trio.records import BROADCAST, SYSTEM_SENDER
from hive_trio.records.federation import BROADCAST_TOKEN as BROADCAST_TOKEN
from hive_trio.records.federation import SUBJECT_PREFIX as SUBJECT_PREFIX
from hive_trio.records.federation import MessageSubject as MessageSubject
from hive_trio.records.federation import RemoteAddress as RemoteAddress
from hive_trio.records.federation import message_subject as message_subject
from hive_trio.records.federation import msg_id as msg_id
from hive_trio.rules.names import AGENT_NAME_PATTERN, validate_agent_name

ROSTER_PREFIX: Final = "roster"
STREAM_PREFIX: Final = "FED_"
CONSUMER_PREFIX: Final = "hive-"


class FederationConfigError(HiveError, ValueError):
    """A federation setting that cannot be used, or a server that cannot start; the message says which."""


def validate_hive_name(name: object) -> str:
    """A hive name follows the agent-name rule (it becomes a NATS subject token and a JetStream domain)."""
    try:
        return validate_agent_name(name)
    except InvalidRequest as exc:
        raise InvalidRequest(str(exc).replace("agent name", "hive name")) from None


@attrs.frozen(kw_only=True)
class LeafPeer:
    """A hive allowed to dial this hive's embedded server as a leafnode, as user `leaf-<hive>`."""

    hive: str
    password: str | None = None
    password_file: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))

    def __attrs_post_init__(self) -> None:
        validate_hive_name(self.hive)
        if (self.password is None) == (self.password_file is None):
            raise FederationConfigError(f"leaf peer {self.hive!r}: set exactly one of password, password_file")


@attrs.frozen(kw_only=True)
class LeafRemote:
    """A server this hive's embedded server dials as a leafnode (a peer hive, or a hub)."""

    url: str
    password: str | None = None
    password_file: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    # The peer's CA, for `tls://` / `nats-leaf://` over TLS across hosts.
    tls_ca: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))


@attrs.frozen(kw_only=True)
class FederationConfig:
    """`[federation]` in the config file. Off by default: a single-host hive never starts NATS."""

    enabled: bool = False
    hive: str | None = None
    # The operator's own NATS; unset means an embedded `nats-server` supervised by the daemon.
    url: str | None = None
    user: str | None = None
    password: str | None = None
    password_file: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    creds_file: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    tls_ca: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    tls_cert: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    tls_key: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    # Embedded server: its client port on loopback (0 = pick a free one), and its leafnode links.
    nats_server: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    client_port: int = 0
    monitor_port: int = 0
    leaf_listen: str | None = None
    leaf_peers: list[LeafPeer] = attrs.field(factory=list)
    leaf_remotes: list[LeafRemote] = attrs.field(factory=list)
    # `sync_interval: always`: acked publishes survive power loss, at a cost in throughput.
    sync_always: bool = False
    # Kept off the link: these agents neither send to nor receive from other hives, nor appear there.
    isolated_agents: list[str] = attrs.field(factory=list)
    # When non-empty, the only hives this one exchanges messages with.
    peers: list[str] = attrs.field(factory=list)
    roster_interval: float = 2.0
    # A peer whose roster was not heard for this long is shown as out of contact.
    contact_timeout: float = 10.0
    publish_timeout: float = 2.0
    ack_wait: float = 30.0

    def __attrs_post_init__(self) -> None:
        if self.hive is not None:
            validate_hive_name(self.hive)
        if self.enabled and self.hive is None:
            raise FederationConfigError("federation.hive must be set when federation is enabled")
        for name in self.isolated_agents:
            validate_agent_name(name)
        for name in self.peers:
            validate_hive_name(name)
        for key in ("roster_interval", "contact_timeout", "publish_timeout", "ack_wait"):
            if getattr(self, key) <= 0:
                raise FederationConfigError(f"federation.{key} must be positive")
        for key in ("client_port", "monitor_port"):
            if not 0 <= getattr(self, key) <= 65535:
                raise FederationConfigError(f"federation.{key} is not a TCP port")
        if self.url is not None and (self.leaf_listen or self.leaf_peers or self.leaf_remotes):
            raise FederationConfigError("federation.leaf_* configure the embedded server; unset them with url")

    @property
    def embedded(self) -> bool:
        return self.url is None

    @property
    def hive_name(self) -> str:
        assert self.hive is not None
        return self.hive

    def allows_peer(self, hive: str) -> bool:
        return not self.peers or hive in self.peers


def read_secret(*, value: str | None, file: Path | None, what: str) -> str | None:
    if value is not None:
        return value
    if file is None:
        return None
    try:
        return file.read_text().strip()
    except OSError as exc:
        raise FederationConfigError(f"{what}: cannot read {file}: {exc.strerror}") from exc


# ------------------------------------------------------------------------------------- addresses
def parse_address(to: str) -> RemoteAddress | None:
    """`agent@hive` (or `*@hive`) as a `RemoteAddress`; a bare name is local and gives None."""
    if "@" not in to:
        return None
    agent, _, hive = to.partition("@")
    if "@" in hive:
        raise InvalidRequest(f"address {to!r} has more than one '@'; use agent@hive")
    validate_hive_name(hive)
    if agent != BROADCAST:
        if agent == SYSTEM_SENDER:
            raise InvalidRequest("'system' sends messages but never receives them")
        if AGENT_NAME_PATTERN.fullmatch(agent) is None:
            raise InvalidRequest(f"{agent!r} in {to!r} is not an agent name")
    return RemoteAddress(agent=agent, hive=hive)


# -------------------------------------------------------------------------------------- subjects
def parse_message_subject(subject: str) -> MessageSubject:
    """The parts of a `fed.` subject; `ValueError` if it is not one (it never came from a hive)."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[0] != SUBJECT_PREFIX:
        raise ValueError(f"not a federation subject: {subject!r}")
    _, origin, dest, sender, token = parts
    for name in (origin, dest):
        if AGENT_NAME_PATTERN.fullmatch(name) is None:
            raise ValueError(f"bad hive token in {subject!r}")
    if sender != SYSTEM_SENDER and AGENT_NAME_PATTERN.fullmatch(sender) is None:
        raise ValueError(f"bad sender token in {subject!r}")
    if token != BROADCAST_TOKEN and AGENT_NAME_PATTERN.fullmatch(token) is None:
        raise ValueError(f"bad recipient token in {subject!r}")
    return MessageSubject(origin=origin, dest=dest, sender=sender, recipient_token=token)


def inbound_filter(hive: str) -> str:
    """Everything addressed to `hive`, from any origin."""
    return f"{SUBJECT_PREFIX}.*.{hive}.>"


def stream_name(hive: str) -> str:
    # Stream names may not hold '.', '*', '>'; a hive name has '-' at most, which is allowed.
    return STREAM_PREFIX + hive


def consumer_name(hive: str) -> str:
    return CONSUMER_PREFIX + hive


def roster_subject(hive: str) -> str:
    return f"{ROSTER_PREFIX}.{hive}"


def roster_origin(subject: str) -> str:
    prefix, _, hive = subject.partition(".")
    if prefix != ROSTER_PREFIX:
        raise ValueError(f"not a roster subject: {subject!r}")
    return validate_hive_name(hive)


# --------------------------------------------------------------------------- embedded server config
def daemon_permissions(hive: str) -> dict[str, object]:
    """A hive daemon's NATS user: publish only as itself, and touch only its own stream and consumer.

    The same list serves the embedded server and an operator's shared server or cluster, where a wider
    `$JS.API.>` would let one hive delete another's stream (docs/FEDERATION.md prints it).
    """
    stream = stream_name(hive)
    return {
        "publish": {
            "allow": [
                f"{SUBJECT_PREFIX}.{hive}.>",
                roster_subject(hive),
                "$JS.API.INFO",
                f"$JS.API.STREAM.*.{stream}",
                f"$JS.API.CONSUMER.*.{stream}",
                f"$JS.API.CONSUMER.*.{stream}.>",
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
                f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
                f"$JS.ACK.{stream}.>",
                "_INBOX.>",
            ]
        },
        "subscribe": {"allow": ["_INBOX.>", f"{ROSTER_PREFIX}.*"]},
    }


def leaf_permissions(hive: str) -> dict[str, object]:
    """A peer hive's leafnode user on this server: it may inject only its own subjects, and be sent
    only what is addressed to it (plus the replies and rosters everyone sees)."""
    return {
        "publish": {"allow": [f"{SUBJECT_PREFIX}.{hive}.>", roster_subject(hive), "_INBOX.>"]},
        "subscribe": {"allow": [inbound_filter(hive), f"{ROSTER_PREFIX}.*", "_INBOX.>"]},
    }


def leaf_user(hive: str) -> str:
    return f"leaf-{hive}"


def daemon_user(hive: str) -> str:
    return f"hive-{hive}"


def render_server_config(
    fed: FederationConfig,
    *,
    store_dir: Path,
    client_port: int,
    monitor_port: int,
    daemon_password: str,
    peer_passwords: dict[str, str],
    remote_passwords: list[str | None],
) -> str:
    """The embedded `nats-server` config. JSON is valid NATS config syntax, and escapes every string."""
    hive = fed.hive_name
    users: list[dict[str, object]] = [
        {"user": daemon_user(hive), "password": daemon_password, "permissions": daemon_permissions(hive)}
    ]
    for peer in fed.leaf_peers:
        users.append(
            {
                "user": leaf_user(peer.hive),
                "password": peer_passwords[peer.hive],
                "permissions": leaf_permissions(peer.hive),
            }
        )
    jetstream: dict[str, object] = {"store_dir": str(store_dir), "domain": hive}
    if fed.sync_always:
        jetstream["sync_interval"] = "always"
    conf: dict[str, object] = {
        "server_name": f"hive-{hive}",
        "listen": f"127.0.0.1:{client_port}",
        "http": f"127.0.0.1:{monitor_port}",
        "jetstream": jetstream,
        "authorization": {"users": users},
        # A message is at most a body at the hive's limit plus its JSON envelope; keep NATS's 1 MiB.
        "max_payload": 1024 * 1024,
    }
    leaf: dict[str, object] = {}
    if fed.leaf_listen:
        leaf["listen"] = fed.leaf_listen
    if fed.leaf_remotes:
        remotes = []
        for remote, password in zip(fed.leaf_remotes, remote_passwords, strict=True):
            entry: dict[str, object] = {"url": remote.url}
            if password is not None:
                entry["url"] = _with_userinfo(remote.url, leaf_user(hive), password)
            if remote.tls_ca is not None:
                entry["tls"] = {"ca_file": str(remote.tls_ca)}
            remotes.append(entry)
        leaf["remotes"] = remotes
    if leaf:
        conf["leafnodes"] = leaf
    return json.dumps(conf, indent=2) + "\n"


def _with_userinfo(url: str, user: str, password: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise FederationConfigError(f"leaf remote url {url!r} has no scheme (nats-leaf://host:port)")
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"


__all__ = [
    "BROADCAST_TOKEN",
    "FederationConfig",
    "FederationConfigError",
    "LeafPeer",
    "LeafRemote",
    "MessageSubject",
    "RemoteAddress",
    "consumer_name",
    "daemon_permissions",
    "daemon_user",
    "inbound_filter",
    "leaf_permissions",
    "leaf_user",
    "message_subject",
    "msg_id",
    "parse_address",
    "parse_message_subject",
    "read_secret",
    "render_server_config",
    "roster_origin",
    "roster_subject",
    "stream_name",
    "validate_hive_name",
]

"""The federation service: forwarder, consumer and roster heartbeat, run beside the coordinator.

- The **forwarder** reads the outbox (store/outbox.py) in order, publishes each row with `Nats-Msg-Id`
  = origin hive + message id, waits for the destination's JetStream ack, and only then marks it
  forwarded. A hive that cannot be reached is retried with a growing back-off; the others go on.
- The **consumer** pulls from this hive's durable consumer, takes the origin hive and the sender from
  the subject (never from the payload), commits to the broker under a unique (origin hive, origin id),
  and acks NATS only after that commit. What cannot be delivered is bounced back, as an outbox row.
- The **roster** task publishes this hive's agents every `roster_interval` on `roster.<hive>` and keeps
  the latest roster of every other hive; a roster is also the link's heartbeat (last contact).

It changes hive.db only through the coordinator's federation methods (`accept_remote`, `settle_outbox`...),
which commit and then announce, so the coordinator stays the one writer and announcer. It never serves
a socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import NoReturn

import attrs
import trio

from hive_trio.core.coordinator import Coordinator
from hive_trio.errors import HiveError, InvalidRequest
from hive_trio.federation.bridge import open_asyncio_loop
from hive_trio.federation.link import ConnectOptions, Incoming, NatsLink, Published
from hive_trio.federation.server import serve_nats_server
from hive_trio.records import (
    LinkState,
    RecordError,
    RemoteAgent,
    RemoteAgentRow,
    WireBounce,
    WireMessage,
    WireRoster,
    from_json,
    to_json,
)
from hive_trio.records.federation import Arrival, OutboxItem
from hive_trio.rules.federation import (
    FederationConfig,
    RemoteAddress,
    parse_message_subject,
    read_secret,
    roster_origin,
)

log = logging.getLogger(__name__)

FORWARD_BATCH = 128
FETCH_BATCH = 64
FETCH_WAIT = 1.0
MAX_BACKOFF = 2.0
CLOSE_GRACE = 3.0


@attrs.define
class _Peer:
    agents: list[RemoteAgentRow]
    seen_at: float


class Federation:
    """This hive's end of the link; `coordinator.federation` while it runs."""

    def __init__(self, coordinator: Coordinator, fed: FederationConfig, link: NatsLink) -> None:
        self.coordinator = coordinator
        self.fed = fed
        self.hive = fed.hive_name
        self.link = link
        self.clock: Callable[[], float] = coordinator.clock
        self._outbox_bell = trio.Event()
        self._peers: dict[str, _Peer] = {}
        self._contact: dict[str, float] = {}
        self.forwarded = 0
        self.received = 0
        self.duplicates = 0
        self.bounced = 0

    # ------------------------------------------------------------------ what the coordinator asks
    def check_route(self, sender: str, address: RemoteAddress) -> None:
        """Refuse a send that configuration keeps off the link, before anything is committed."""
        if sender in self.fed.isolated_agents:
            raise InvalidRequest(f"{sender!r} is kept off the federation link by configuration")
        if not self.fed.allows_peer(address.hive):
            raise InvalidRequest(f"hive {address.hive!r} is not one of this hive's federation peers")

    def wake_forwarder(self) -> None:
        self._outbox_bell.set()

    def remote_agents(self) -> list[RemoteAgent]:
        return [
            RemoteAgent(name=a.name, hive=hive, running=a.running, status_text=a.status_text, seen_at=peer.seen_at)
            for hive, peer in sorted(self._peers.items())
            for a in peer.agents
        ]

    async def link_state(self) -> LinkState:
        stats = await self.coordinator.outbox_stats()
        return LinkState(
            hive=self.hive,
            connected=self.link.connected,
            outbox_depth=stats.depth,
            oldest_unforwarded_at=stats.oldest_queued_at,
            last_contact_at=max(self._contact.values(), default=None),
            peers=dict(sorted(self._contact.items())),
            error=None if self.link.connected else self.link.last_error,
        )

    def _heard_from(self, hive: str) -> None:
        self._contact[hive] = self.clock()

    # ------------------------------------------------------------------ forwarder
    async def serve_forwarder(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        retry_at: dict[str, float] = {}
        backoff: dict[str, float] = {}
        task_status.started()
        while True:
            bell = self._outbox_bell = trio.Event()
            now = trio.current_time()
            waiting = {hive for hive, at in retry_at.items() if at > now}
            try:
                items = await self.coordinator.outbox_pending(limit=FORWARD_BATCH, skip_hives=waiting)
            except HiveError:
                log.warning("forwarder could not read the outbox; retrying", exc_info=True)
                await trio.sleep(1.0)
                continue
            groups: dict[str, list[OutboxItem]] = {}
            for item in items:
                groups.setdefault(item.hive, []).append(item)
            if not groups:
                # Nothing to do now: wake for a new row, or when the first hive in back-off is due.
                wake_at = min((retry_at[h] for h in waiting), default=float("inf"))
                with trio.move_on_at(wake_at):
                    await bell.wait()
                continue
            done: list[int] = []
            failed: list[tuple[int, str]] = []
            for hive, group in groups.items():
                try:
                    results = await self.link.publish(
                        [(i.subject, i.payload.encode(), i.nats_msg_id) for i in group],
                        ack_timeout=self.fed.publish_timeout,
                    )
                except Exception as exc:  # the bridge or the client failed as a whole: retry later
                    log.debug("publish to %s failed: %s", hive, exc)
                    results = [Published(ok=False, error=str(exc))]
                for item, result in zip(group, results, strict=False):
                    if result.ok:
                        done.append(item.id)
                    elif result.permanent:
                        failed.append((item.id, result.error or "refused by the link"))
                if len(results) < len(group) or not all(r.ok or r.permanent for r in results):
                    delay = backoff[hive] = min(backoff.get(hive, 0.05) * 2, MAX_BACKOFF)
                    retry_at[hive] = trio.current_time() + delay
                else:
                    backoff.pop(hive, None)
                    retry_at.pop(hive, None)
            if done or failed:
                await self._mark(done, failed)

    async def _mark(self, done: list[int], failed: list[tuple[int, str]]) -> None:
        # Shielded: JetStream holds these now; losing the mark only means one republish (deduped).
        with trio.CancelScope(shield=True):
            try:
                await self.coordinator.settle_outbox(forwarded=done, failed=failed)
            except HiveError:
                log.warning("could not mark %d outbox rows forwarded; they will be republished", len(done))
                return
        self.forwarded += len(done)

    # ------------------------------------------------------------------ consumer
    async def serve_consumer(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        backoff = 0.05
        while True:
            try:
                await self.link.ensure_inbound()
                break
            except Exception as exc:
                log.info("federation: inbound stream not ready yet (%s)", exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        task_status.started()
        backoff, failures = 0.05, 0
        while True:
            try:
                batch = await self.link.fetch(batch=FETCH_BATCH, wait=FETCH_WAIT)
            except Exception as exc:
                failures += 1
                # A restart of the server shows as a few failures; a steady stream means a real problem
                # (permissions on the operator's server, a deleted consumer): say so, once per streak.
                (log.warning if failures == 10 else log.debug)("federation: fetch failed: %s", exc)
                self.link.last_error = str(exc) or type(exc).__name__
                await trio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff, failures = 0.05, 0
            if batch:
                await self._take(batch)

    async def _take(self, batch: list[Incoming]) -> None:
        good: list[Incoming] = []
        arrivals: list[Arrival] = []
        bad: list[Incoming] = []
        for item in batch:
            try:
                subject = parse_message_subject(item.subject)
                if subject.dest != self.hive or subject.origin == self.hive:
                    raise ValueError(f"{item.subject} is not for this hive from another")
                wire: WireMessage | WireBounce = from_json(item.data, WireBounce if subject.is_bounce else WireMessage)
            except (ValueError, RecordError, HiveError) as exc:
                log.warning("federation: dropping malformed message on %s: %s", item.subject, exc)
                bad.append(item)
                continue
            good.append(item)
            arrivals.append(Arrival(subject=subject, wire=wire))
        if arrivals:
            try:
                results = await self.coordinator.accept_remote(
                    arrivals,
                    me=self.hive,
                    isolated=frozenset(self.fed.isolated_agents),
                    allows_peer=self.fed.allows_peer,
                )
            except HiveError:
                # Not committed, so not acked: JetStream redelivers after ack_wait.
                log.warning("federation: could not commit %d received messages; they will come again", len(good))
                return
            for arrival, result in zip(arrivals, results, strict=True):
                self._heard_from(arrival.subject.origin)
                if result.duplicate:
                    self.duplicates += 1
                elif result.bounced is not None:
                    self.bounced += 1
                else:
                    self.received += len(result.messages)
            if any(r.bounced for r in results):
                self.wake_forwarder()
        # After the commit: a crash before these acks only means a redelivery, absorbed by the key.
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
            try:
                await self.link.ack(good)
                await self.link.term(bad)
            except Exception as exc:
                log.debug("ack failed (the batch will be redelivered and deduplicated): %s", exc)

    # ------------------------------------------------------------------ roster
    async def serve_roster(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        await self.link.subscribe_rosters()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publish_rosters)
            task_status.started()
            async for ping in self.link.roster_receive:
                try:
                    origin = roster_origin(ping.subject)
                    if origin == self.hive or not self.fed.allows_peer(origin):
                        continue
                    roster: WireRoster = from_json(ping.data, WireRoster)
                except (ValueError, RecordError, HiveError) as exc:
                    log.debug("ignoring a malformed roster on %s: %s", ping.subject, exc)
                    continue
                self._peers[origin] = _Peer(agents=roster.agents, seen_at=self.clock())
                self._heard_from(origin)
        raise AssertionError("the roster channel closed")

    async def _publish_rosters(self) -> NoReturn:
        isolated = set(self.fed.isolated_agents)
        while True:
            try:
                rows = await self.coordinator.agent_statuses()
                roster = WireRoster(
                    agents=[
                        RemoteAgentRow(name=r.name, running=r.running, status_text=r.status_text)
                        for r in rows
                        if r.name not in isolated
                    ],
                    at=self.clock(),
                )
                if self.link.connected:
                    await self.link.publish_roster(to_json(roster).encode())
            except Exception as exc:
                log.debug("roster publish failed: %s", exc)
            await trio.sleep(self.fed.roster_interval)


def connect_options(fed: FederationConfig) -> ConnectOptions:
    """How to reach the operator's own NATS (`federation.url`)."""
    assert fed.url is not None
    return ConnectOptions(
        url=fed.url,
        user=fed.user,
        password=read_secret(value=fed.password, file=fed.password_file, what="federation.password"),
        creds_file=None if fed.creds_file is None else str(fed.creds_file),
        tls_ca=None if fed.tls_ca is None else str(fed.tls_ca),
        tls_cert=None if fed.tls_cert is None else str(fed.tls_cert),
        tls_key=None if fed.tls_key is None else str(fed.tls_key),
    )


async def serve_federation(
    coordinator: Coordinator, *, task_status: trio.TaskStatus[Federation] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    """Run this hive's federation: its embedded NATS server (unless `federation.url`), the loop thread,
    the link, and the three services.

    `started` as soon as remote sends can be committed (the embedded server, if any, is up): a hive
    must stay usable while its link, or the operator's NATS, is down, so connecting, and everything
    after it, carries on in the background; the outbox holds what is sent meanwhile.
    """
    fed = coordinator.config.federation
    async with open_asyncio_loop() as aio, trio.open_nursery() as outer:
        if fed.embedded:
            server = await outer.start(partial(serve_nats_server, fed, state_dir=coordinator.config.state_dir))
            options = ConnectOptions(url=server.url, user=server.user, password=server.password)
        else:
            options = connect_options(fed)
        link = NatsLink(aio, hive=fed.hive_name, ack_wait=fed.ack_wait)
        service = Federation(coordinator, fed, link)
        coordinator.federation = service
        task_status.started(service)
        try:
            backoff = 0.05
            while True:
                try:
                    await link.connect(options)
                    break
                except Exception as exc:
                    link.last_error = str(exc) or type(exc).__name__
                    log.info("federation: cannot reach NATS at %s yet (%s)", options.url, link.last_error)
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
            async with trio.open_nursery() as inner:
                await inner.start(service.serve_consumer)
                await inner.start(service.serve_forwarder)
                await inner.start(service.serve_roster)
                await trio.sleep_forever()
        finally:
            coordinator.federation = None
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
                try:
                    await link.close()
                except Exception:
                    log.debug("closing the NATS link failed", exc_info=True)
            outer.cancel_scope.cancel()
    raise AssertionError("unreachable")


__all__ = ["Federation", "connect_options", "serve_federation"]

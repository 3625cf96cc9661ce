"""Crash safety: the daemon runs as a real process, is SIGKILLed mid-burst, restarted, and the history is judged.

Nothing acknowledged may be lost. Clients behave as real ones do: an MCP call whose reply never came is
retried after the restart (at-least-once), so a duplicate is allowed only for such a send, and counted.
docs/RELIABILITY.md records the counts these tests print (run with ``-s`` to see them).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import apsw
import attrs
import pytest
import trio
from queue_checker import History, SendAttempt, check

from hive_trio.clients.host import HostRefused, host_request
from hive_trio.clients.mcp import AgentClient, ToolError, open_agent_client
from hive_trio.lifecycle import config_repos
from hive_trio.testing import DaemonProcess, open_daemon_process, short_temp_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SENDERS = ("s0", "s1", "s2", "s3")
RECIPIENTS = ("r0", "r1", "r2", "r3")
CONNECTIONS_PER_SENDER = 6
KILLS = 3
# The agents are real processes of the lifecycle's process backend, idle ones: the tests' own MCP
# clients speak for them on their sockets.
IDLE_AGENT = "exec sleep infinity"
DAEMON_ARGS = ("--log-level", "warning", "--agent-command", IDLE_AGENT)


@pytest.fixture
def hive_dir() -> Any:
    with short_temp_dir("hc-") as path:
        yield path


def agent_socket(daemon: DaemonProcess, name: str) -> Path:
    return daemon.runtime_dir / "agents" / name / "mcp.sock"


@attrs.define
class Crash:
    """Who may fail, and when: any client error before the kill is a bug; after it, the daemon is gone."""

    daemon: DaemonProcess
    kill_after: int
    confirmed: int = 0
    killed: bool = False
    errors_before_kill: list[str] = attrs.Factory(list)

    def count(self) -> None:
        self.confirmed += 1
        if self.confirmed >= self.kill_after and not self.killed:
            self.killed = True
            self.daemon.process.kill()  # SIGKILL, while every other client has a call in flight

    async def guard(self, client: Callable[[], Awaitable[None]]) -> None:
        try:
            await client()
        except Exception as exc:  # the connection died under the call
            if not self.killed:
                self.errors_before_kill.append(repr(exc))


async def spawn_all(daemon: DaemonProcess, names: tuple[str, ...]) -> None:
    for name in names:
        await host_request(daemon.host_socket, "spawn", name=name)


async def assert_daemon_answers_and_no_spinner(daemon: DaemonProcess, names: tuple[str, ...]) -> None:
    rows = (await host_request(daemon.host_socket, "agent_status"))["agent_statuses"]
    assert sorted(r["name"] for r in rows) == sorted(names)
    assert [r["name"] for r in rows if r["transient"] is not None] == []
    async with open_agent_client(agent_socket(daemon, names[0])) as client:
        assert (await client.call("status"))["name"] == names[0]


# ------------------------------------------------------------------------------------------ messages


@attrs.define
class SendHistory:
    history: History = attrs.Factory(History)
    sender_of: dict[str, str] = attrs.Factory(dict)
    retried: set[int] = attrs.Factory(set)  # ids (python object ids) of indeterminate attempts retried

    def pending_retries(self) -> list[SendAttempt]:
        return [a for a in self.history.attempts if a.indeterminate and id(a) not in self.retried]


async def retry_indeterminate(daemon: DaemonProcess, sends: SendHistory) -> None:
    """What a client does after reconnecting: send again every message whose reply it never got."""
    for attempt in sends.pending_retries():
        sends.retried.add(id(attempt))
        async with open_agent_client(agent_socket(daemon, sends.sender_of[attempt.body])) as client:
            retry = sends.history.attempt(attempt.body, attempt.recipient)
            retry.acked_id = (await client.call("send", to=attempt.recipient, body=attempt.body))["id"]


def ours(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The test's messages, without the daemon's own notes from `system` (spawned, restarted...)."""
    return [m for m in messages if m["from"] != "system"]


async def consume(client: AgentClient, recipient: str, history: History) -> None:
    await client.call("requeue_inflight")  # what a harness does at boot
    while True:
        got = (await client.call("recv", max=32, wait_seconds=0.5))["messages"]
        receipts = history.received(recipient, ours(got))
        if receipts:
            await client.call("ack_turn")
            for receipt in receipts:
                receipt.ack_confirmed = True


async def burst_until_killed(daemon: DaemonProcess, sends: SendHistory, *, round_no: int, kill_after: int) -> Crash:
    crash = Crash(daemon, kill_after)

    def sender(index: int) -> Callable[[], Awaitable[None]]:
        name = SENDERS[index % len(SENDERS)]

        async def run() -> None:
            async with open_agent_client(agent_socket(daemon, name)) as client:
                for n in range(1_000_000):
                    recipient = RECIPIENTS[(index + n) % len(RECIPIENTS)]
                    body = f"round {round_no} client {index} #{n}"
                    sends.sender_of[body] = name
                    attempt = sends.history.attempt(body, recipient)
                    attempt.acked_id = (await client.call("send", to=recipient, body=body))["id"]
                    crash.count()

        return run

    def consumer(recipient: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            async with open_agent_client(agent_socket(daemon, recipient)) as client:
                await consume(client, recipient, sends.history)

        return run

    async with trio.open_nursery() as nursery:
        for recipient in RECIPIENTS:
            nursery.start_soon(crash.guard, consumer(recipient))
        for index in range(len(SENDERS) * CONNECTIONS_PER_SENDER):
            nursery.start_soon(crash.guard, sender(index))
    assert crash.killed
    assert crash.errors_before_kill == []
    await daemon.process.wait()
    return crash


async def drain(daemon: DaemonProcess, history: History) -> None:
    for recipient in RECIPIENTS:
        async with open_agent_client(agent_socket(daemon, recipient)) as client:
            await client.call("requeue_inflight")
            while got := (await client.call("recv", max=32))["messages"]:
                history.received(recipient, ours(got))
            await client.call("ack_turn")
            assert (await client.call("status"))["pending_messages"] == 0


async def test_sigkill_mid_send_burst_loses_no_acknowledged_message(hive_dir: Path) -> None:
    sends = SendHistory()
    rng = random.Random(0xC0FFEE)
    for round_no in range(KILLS):
        async with open_daemon_process(hive_dir, *DAEMON_ARGS) as daemon:
            if round_no == 0:
                await spawn_all(daemon, SENDERS + RECIPIENTS)
            else:
                await assert_daemon_answers_and_no_spinner(daemon, SENDERS + RECIPIENTS)
            await retry_indeterminate(daemon, sends)
            await burst_until_killed(daemon, sends, round_no=round_no, kill_after=rng.randint(150, 450))
    async with open_daemon_process(hive_dir, *DAEMON_ARGS) as daemon:
        await assert_daemon_answers_and_no_spinner(daemon, SENDERS + RECIPIENTS)
        await retry_indeterminate(daemon, sends)
        await drain(daemon, sends.history)
    verdict = check(sends.history)
    print(f"\nSIGKILL x{KILLS} mid send burst: {verdict.summary()}")
    assert verdict.valid, verdict
    assert verdict.acknowledged >= KILLS * 150
    assert verdict.lost == []


# ------------------------------------------------------------------------------------------ questions

ASKERS = ("s0", "s1", "s2", "s3")
TARGETS = ("r0", "r1", "r2", "r3")
OPERATOR_QUESTIONS_PER_ASKER = 40
PEER_QUESTIONS_PER_ASKER = 10
SHORT_TTL = 1.0


@attrs.define
class AnswerAttempt:
    question_id: int
    answer: str
    by: str  # "operator" or the target agent
    confirmed: bool = False


async def ask_questions(daemon: DaemonProcess, *, round_no: int) -> tuple[list[int], list[tuple[int, str]], list[int]]:
    operator_qs: list[int] = []
    peer_qs: list[tuple[int, str]] = []
    short_qs: list[int] = []
    for i, asker in enumerate(ASKERS):
        async with open_agent_client(agent_socket(daemon, asker)) as client:
            for n in range(OPERATOR_QUESTIONS_PER_ASKER):
                q = await client.call("ask", question=f"r{round_no} {asker} asks #{n}?", options=["yes", "no"])
                operator_qs.append(q["question_id"])
            for n in range(PEER_QUESTIONS_PER_ASKER):
                target = TARGETS[(i + n) % len(TARGETS)]
                q = await client.call("ask", question=f"r{round_no} {asker} asks {target} #{n}?", to=target)
                peer_qs.append((q["question_id"], target))
            # Due while the daemon is down: the next start must resolve it, notice included.
            q = await client.call("ask", question=f"r{round_no} {asker}: quick?", ttl_seconds=SHORT_TTL, default="no")
            short_qs.append(q["question_id"])
    return operator_qs, peer_qs, short_qs


async def answer_burst(
    daemon: DaemonProcess, operator_qs: list[int], peer_qs: list[tuple[int, str]], *, kill_after: int
) -> list[AnswerAttempt]:
    crash = Crash(daemon, kill_after)
    attempts: list[AnswerAttempt] = []
    operator_queue = list(operator_qs)
    peer_queue = {t: [qid for qid, target in peer_qs if target == t] for t in TARGETS}

    async def operator_answers() -> None:
        while operator_queue:
            attempt = AnswerAttempt(operator_queue.pop(0), f"yes ({len(attempts)})", "operator")
            attempts.append(attempt)
            await host_request(daemon.host_socket, "answer", id=attempt.question_id, answer=attempt.answer)
            attempt.confirmed = True
            crash.count()

    def peer_answers(target: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            async with open_agent_client(agent_socket(daemon, target)) as client:
                while peer_queue[target]:
                    attempt = AnswerAttempt(peer_queue[target].pop(0), f"{target} says ok", target)
                    attempts.append(attempt)
                    await client.call("answer", question_id=attempt.question_id, answer=attempt.answer)
                    attempt.confirmed = True
                    crash.count()

        return run

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(crash.guard, operator_answers)
        for target in TARGETS:
            nursery.start_soon(crash.guard, peer_answers(target))
    assert crash.killed, "the burst ended before the kill; raise the question counts"
    assert crash.errors_before_kill == []
    await daemon.process.wait()
    return attempts


async def retry_answers(daemon: DaemonProcess, attempts: list[AnswerAttempt]) -> tuple[int, int]:
    """Retry each answer whose reply never came: it either lands now, or it had landed before the kill."""
    landed_now = landed_before = 0
    for attempt in [a for a in attempts if not a.confirmed]:
        refusal = None
        if attempt.by == "operator":
            try:
                await host_request(daemon.host_socket, "answer", id=attempt.question_id, answer=attempt.answer)
            except HostRefused as exc:
                refusal = str(exc)
        else:
            async with open_agent_client(agent_socket(daemon, attempt.by)) as client:
                try:
                    await client.call("answer", question_id=attempt.question_id, answer=attempt.answer)
                except ToolError as exc:
                    refusal = str(exc)
        if refusal is None:
            landed_now += 1
        else:
            assert "already answered" in refusal, refusal
            landed_before += 1
        attempt.confirmed = True
    return landed_now, landed_before


def helper_event(message: dict[str, Any]) -> dict[str, Any]:
    """The HelperEvent a message from `system` carries ({} for the plain-text "you were started" notes)."""
    if message["from"] != "system" or not message["body"].startswith("{"):
        return {}
    event: dict[str, Any] = json.loads(message["body"])
    return event


async def answered_notices(daemon: DaemonProcess) -> dict[int, list[str]]:
    """Every `question_answered` notice in the askers' inboxes, by question id."""
    notices: dict[int, list[str]] = {}
    for asker in ASKERS:
        async with open_agent_client(agent_socket(daemon, asker)) as client:
            await client.call("requeue_inflight")
            while got := (await client.call("recv", max=32))["messages"]:
                for m in got:
                    event = helper_event(m)
                    if event.get("event") == "question_answered":
                        notices.setdefault(event["id"], []).append(event["answer"])
            await client.call("ack_turn")
    return notices


def question_rows(state_dir: Path) -> dict[int, tuple[Any, ...]]:
    conn = apsw.Connection(str(state_dir / "hive.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute("SELECT id, answer, answerer, answered_at FROM questions").fetchall()
    finally:
        conn.close()
    return {r[0]: tuple(r[1:]) for r in rows}


async def test_sigkill_during_answers_leaves_no_question_half_resolved(hive_dir: Path) -> None:
    rng = random.Random(0xA115)
    attempts: list[AnswerAttempt] = []
    short: list[int] = []
    retried = [0, 0]
    for round_no in range(2):
        async with open_daemon_process(hive_dir, *DAEMON_ARGS) as daemon:
            if round_no == 0:
                await spawn_all(daemon, ASKERS + TARGETS)
            else:
                await assert_daemon_answers_and_no_spinner(daemon, ASKERS + TARGETS)
                now, before = await retry_answers(daemon, attempts)
                retried[0] += now
                retried[1] += before
            operator_qs, peer_qs, short_qs = await ask_questions(daemon, round_no=round_no)
            short += short_qs
            attempts += await answer_burst(daemon, operator_qs, peer_qs, kill_after=rng.randint(40, 120))
    await trio.sleep(SHORT_TTL)  # real time: the short questions fall due while the daemon is down
    async with open_daemon_process(hive_dir, *DAEMON_ARGS) as daemon:
        await assert_daemon_answers_and_no_spinner(daemon, ASKERS + TARGETS)
        now, before = await retry_answers(daemon, attempts)
        retried[0] += now
        retried[1] += before
        # Everything left open is answered now, so every question ends resolved, each exactly once.
        for q in (await host_request(daemon.host_socket, "questions"))["questions"]:
            await host_request(daemon.host_socket, "answer", id=q["id"], answer="late")
        notices = await answered_notices(daemon)
    rows = question_rows(daemon.state_dir)
    half = {qid: row for qid, row in rows.items() if (row[0] is None) != (row[1] is None) or row[0] is None}
    assert half == {}, "a question is half-resolved or left open"
    for attempt in attempts:
        answer, answerer, _ = rows[attempt.question_id]
        if answer != "late":
            assert (answer, answerer) == (attempt.answer, attempt.by)
    for qid in short:
        assert rows[qid][:2] == ("no", "ttl")  # its default, resolved by the watchdog at the next start
    # Every resolution reached its asker exactly once, in the same transaction as the answer.
    assert {qid: [rows[qid][0]] for qid in rows} == notices
    print(
        f"\nSIGKILL x2 mid answer burst: questions={len(rows)} answers_sent={len(attempts)} "
        f"unconfirmed_retried_landed_now={retried[0]} unconfirmed_had_landed={retried[1]} "
        f"expired_at_restart={len(short)} half_resolved=0 missing_notices=0"
    )


# ------------------------------------------------------------------------------------------ approvals

PROPOSERS = ("p0", "p1", "p2", "p3", "p4", "p5")


@attrs.define
class Proposal:
    approval_id: int
    agent: str
    sha: str
    approve: bool  # else it is to be denied


async def git_commit(repo: Path, text: str, message: str) -> str:
    (repo / "agent.toml").write_text(text)
    await config_repos.run_git(repo, ["add", "--all"], what="add")
    await config_repos.run_git(repo, ["commit", "--quiet", "-m", message], what="commit")
    return await config_repos.rev_parse(repo, "HEAD")


async def propose(daemon: DaemonProcess, *, round_no: int) -> list[Proposal]:
    """Per agent: a commit on top of its config repo's head (to approve) and a sibling (to deny)."""
    proposals = []
    async with open_agent_client(daemon.runtime_dir / "manager" / "mcp.sock") as manager:
        for agent in PROPOSERS:
            repo = daemon.state_dir / "agents" / agent / "config"
            head = await config_repos.rev_parse(repo, "HEAD")
            keep = await git_commit(repo, f'[agent]\ndescription = "round {round_no}"\n', f"round {round_no}")
            await config_repos.run_git(repo, ["checkout", "--quiet", "--detach", head], what="checkout")
            drop = await git_commit(repo, '[agent]\ndescription = "rejected"\n', f"round {round_no}, rejected")
            await config_repos.run_git(repo, ["checkout", "--quiet", "-B", "main", keep], what="checkout")
            for sha, approve in ((keep, True), (drop, False)):
                made = await manager.call("request_apply_commit", agent=agent, commit_ref=sha, description="x")
                assert made["status"] == "pending", made
                proposals.append(Proposal(made["approval_id"], agent, sha, approve))
    return proposals


async def decide_until_killed(daemon: DaemonProcess, proposals: list[Proposal], *, kill_at: float) -> int:
    """Approve and deny every proposal at once; SIGKILL the daemon `kill_at` seconds in. Returns how many
    decisions were confirmed before that."""
    crash = Crash(daemon, kill_after=len(proposals) + 1)  # the timer kills, not a count

    def decide(p: Proposal) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await host_request(daemon.host_socket, "approve" if p.approve else "deny", id=p.approval_id, note="n")
            crash.count()

        return run

    async with trio.open_nursery() as nursery:
        for p in proposals:
            nursery.start_soon(crash.guard, decide(p))
        await trio.sleep(kill_at)  # real time: the approvals' builds and git steps are real processes
        crash.killed = True
        daemon.process.kill()
    assert crash.errors_before_kill == []
    await daemon.process.wait()
    return crash.confirmed


async def manager_notices(daemon: DaemonProcess, seen: dict[int, list[str]]) -> None:
    async with open_agent_client(daemon.runtime_dir / "manager" / "mcp.sock") as manager:
        while got := (await manager.call("recv", max=32))["messages"]:
            for m in got:
                event = helper_event(m)
                if event.get("event") == "approval_resolved":
                    seen.setdefault(event["id"], []).append(event["status"])
        await manager.call("ack_turn")


async def assert_approvals_whole(
    daemon: DaemonProcess, proposals: list[Proposal], seen: dict[int, list[str]]
) -> dict[str, int]:
    """Every approval is pending with no trace, or resolved with its notice and (approved) its deploy."""
    rows = {a["id"]: a for a in (await host_request(daemon.host_socket, "approvals"))["approvals"]}
    states: dict[str, int] = {}
    for p in proposals:
        status = rows[p.approval_id]["status"]
        states[status] = states.get(status, 0) + 1
        applied = daemon.state_dir / "applied" / p.agent
        main = await config_repos.rev_parse(applied, "main")
        on_main = await config_repos.is_ancestor(applied, p.sha, main)
        tags = (await config_repos.run_git(applied, ["tag", "--list"], what="tags")).stdout.decode().split()
        if status == "pending":
            assert p.approval_id not in seen, f"#{p.approval_id} is pending, yet its manager was told"
            # (A later proposal built on this one may have been deployed, carrying its commit along.)
            assert main != p.sha, f"#{p.approval_id} is pending, yet the applied main is its commit"
            assert f"deployed/{p.approval_id}" not in tags
        else:
            assert seen.get(p.approval_id) == [status], f"#{p.approval_id} {status}: notices {seen.get(p.approval_id)}"
        if status == "approved":
            assert on_main and f"deployed/{p.approval_id}" in tags, f"#{p.approval_id} approved but not deployed"
    for row in (await host_request(daemon.host_socket, "agent_status"))["agent_statuses"]:
        if row["name"] in PROPOSERS:
            main = await config_repos.rev_parse(daemon.state_dir / "applied" / row["name"], "main")
            assert row["deployed_sha"] == main[:12], row
    return states


async def test_sigkill_during_approvals_leaves_none_half_resolved(hive_dir: Path) -> None:
    rng = random.Random(0xA99)
    proposals: list[Proposal] = []
    seen: dict[int, list[str]] = {}
    found: dict[str, int] = {}  # the state each round's approvals were in after its kill
    confirmed = finished_at_start = 0
    fresh: list[Proposal] = []
    for round_no in range(KILLS + 1):
        async with open_daemon_process(hive_dir, *DAEMON_ARGS) as daemon:
            if round_no == 0:
                await spawn_all(daemon, PROPOSERS)
            else:
                await assert_daemon_answers_and_no_spinner(daemon, PROPOSERS)
                finished_at_start += sum("finished approval #" in line for line in daemon.stderr_lines)
                await manager_notices(daemon, seen)
                await assert_approvals_whole(daemon, proposals, seen)
                for status, n in (await assert_approvals_whole(daemon, fresh, seen)).items():
                    found[status] = found.get(status, 0) + n
            if round_no < KILLS:
                fresh = await propose(daemon, round_no=round_no)
                proposals += fresh
                confirmed += await decide_until_killed(daemon, fresh, kill_at=rng.uniform(0.0, 0.12))
                continue
            # The last start: whatever was left pending can still be decided, once, and ends whole.
            rows = {a["id"]: a for a in (await host_request(daemon.host_socket, "approvals"))["approvals"]}
            for p in proposals:
                if rows[p.approval_id]["status"] == "pending":
                    try:
                        await host_request(daemon.host_socket, "approve" if p.approve else "deny", id=p.approval_id)
                    except HostRefused as exc:
                        assert "does not build on the deployed config" in str(exc), exc  # superseded: failed
            await manager_notices(daemon, seen)
            final = await assert_approvals_whole(daemon, proposals, seen)
    assert "pending" not in final
    print(
        f"\nSIGKILL x{KILLS} mid approvals: approvals={len(proposals)}, {confirmed} decisions confirmed before the"
        f" kills; found after each kill {found}; {finished_at_start} deploys cut off between their git steps and"
        f" their record, finished at the next start; final {final}"
    )


# ------------------------------------------------------------------------------------------ lifecycle

STEADY = ("l0", "l1", "l2", "l3", "l4", "l5")


def agent_processes(root: Path) -> dict[int, str]:
    """Live processes whose working directory is inside `root` (process agents run in their state dir)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text()
        except OSError:
            continue
        if cwd.startswith(str(root)) and state[state.rfind(")") + 2] != "Z":
            found[int(entry.name)] = cwd
    return found


async def act_until_killed(daemon: DaemonProcess, rng: random.Random, *, round_no: int, kill_at: float) -> int:
    """Each steady agent gets a random run of operator actions; a new agent is spawned and destroyed."""
    crash = Crash(daemon, kill_after=1_000_000)
    plans = {name: [rng.choice(["restart", "stop", "start", "rebuild"]) for _ in range(20)] for name in STEADY}

    def actor(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            for verb in plans[name]:
                if verb == "stop":
                    await host_request(daemon.host_socket, "stop", scope={"agent_names": [name]}, graceful=False)
                elif verb == "start":
                    await host_request(daemon.host_socket, "start", scope={"agent_names": [name]})
                else:
                    await host_request(daemon.host_socket, verb, name=name)
                crash.count()

        return run

    async def newcomer() -> None:
        for i in range(20):
            name = f"n{round_no}x{i}"
            await host_request(daemon.host_socket, "spawn", name=name)
            crash.count()
            if i % 2:
                await host_request(daemon.host_socket, "destroy", name=name)
                crash.count()

    async with trio.open_nursery() as nursery:
        for name in STEADY:
            nursery.start_soon(crash.guard, actor(name))
        nursery.start_soon(crash.guard, newcomer)
        await trio.sleep(kill_at)
        crash.killed = True
        daemon.process.kill()
    assert crash.errors_before_kill == []
    await daemon.process.wait()
    return crash.confirmed


async def assert_lifecycle_whole(daemon: DaemonProcess, root: Path) -> dict[str, int]:
    """No spinner; every agent answers on its socket and is running, deliberately stopped, or failed with a
    reason; and exactly the running agents have a process (no orphan of the killed daemon survives)."""
    rows = (await host_request(daemon.host_socket, "agent_status"))["agent_statuses"]
    assert [r["name"] for r in rows if r["transient"] is not None] == []
    states = {"running": 0, "stopped": 0, "failed": 0}
    for row in rows:
        async with open_agent_client(agent_socket(daemon, row["name"])) as client:
            assert (await client.call("whoami"))["name"] == row["name"]
        if row["failed"]:
            assert row["failed_reason"], row
            states["failed"] += 1
        else:
            states["running" if row["running"] else "stopped"] += 1
    running = sorted(r["name"] for r in rows if r["running"])
    processes = agent_processes(root)
    assert sorted(Path(cwd).parent.name for cwd in processes.values()) == running, (
        processes,
        rows,
        daemon.stderr_lines[-30:],
    )
    return states


async def test_sigkill_during_lifecycle_actions_leaves_no_spinner_and_no_orphan(hive_dir: Path) -> None:
    rng = random.Random(0x11FE)
    confirmed = 0
    found: list[dict[str, int]] = []
    for round_no in range(KILLS + 1):
        async with open_daemon_process(hive_dir, *DAEMON_ARGS) as daemon:
            if round_no == 0:
                await spawn_all(daemon, STEADY)
            else:
                found.append(await assert_lifecycle_whole(daemon, hive_dir))
                # Even a spawn cut off half-way is finished at the start, not left failed.
                failed = [
                    r for r in (await host_request(daemon.host_socket, "agent_status"))["agent_statuses"] if r["failed"]
                ]
                assert failed == [], [r["failed_reason"] for r in failed]
            if round_no < KILLS:
                confirmed += await act_until_killed(daemon, rng, round_no=round_no, kill_at=rng.uniform(0.05, 0.6))
                continue
            # Nothing is stuck: every agent takes an action again, and a failed one is recovered by a start.
            rows = (await host_request(daemon.host_socket, "agent_status"))["agent_statuses"]
            for row in rows:
                await host_request(daemon.host_socket, "restart", name=row["name"])
            final = await assert_lifecycle_whole(daemon, hive_dir)
            assert final["failed"] == 0 and final["stopped"] == 0, final
    assert agent_processes(hive_dir) == {}  # a graceful stop takes its agents along
    print(
        f"\nSIGKILL x{KILLS} mid lifecycle actions: {confirmed} actions confirmed before the kills;"
        f" agents found after each kill {found}; final {final}"
    )


# ------------------------------------------------------------------------------ approve, SIGKILL, then deny


async def test_sigkill_mid_spawn_approval_then_deny_never_wins_over_a_running_agent(hive_dir: Path) -> None:
    """The probe: an approve cut off by SIGKILL left the spawned agent running and the approval pending,
    and a later deny won (93 of 456). Now, after every kill, an approval's status agrees with the roster,
    and deny is refused for every agent that exists (issue 13)."""
    rng = random.Random(0x5B1)
    per_round = 8
    outcome: dict[str, int] = {}
    denied_ok = denied_refused = finished_at_start = 0
    for round_no in range(KILLS):
        async with open_daemon_process(hive_dir, *DAEMON_ARGS) as daemon:
            names = [f"sp{round_no}x{k}" for k in range(per_round)]
            ids = [(await host_request(daemon.host_socket, "request_spawn", name=n))["approval"]["id"] for n in names]
            crash = Crash(daemon, kill_after=per_round + 1)

            def approve(approval_id: int, crash: Crash = crash) -> Callable[[], Awaitable[None]]:
                async def run() -> None:
                    await host_request(daemon.host_socket, "approve", id=approval_id)
                    crash.count()

                return run

            async with trio.open_nursery() as nursery:
                for approval_id in ids:
                    nursery.start_soon(crash.guard, approve(approval_id))
                await trio.sleep(rng.uniform(0.0, 0.1))  # real time: spawns run git and start processes
                crash.killed = True
                daemon.process.kill()
            assert crash.errors_before_kill == []
            await daemon.process.wait()
        async with open_daemon_process(hive_dir, *DAEMON_ARGS) as daemon:
            rows = {a["id"]: a for a in (await host_request(daemon.host_socket, "approvals"))["approvals"]}
            agents = set((await host_request(daemon.host_socket, "list"))["agents"])
            finished_at_start += sum(
                "cut off by the daemon's end; recorded approved" in line for line in daemon.stderr_lines
            )
            for approval_id, name in zip(ids, names, strict=True):
                status = rows[approval_id]["status"]
                outcome[status] = outcome.get(status, 0) + 1
                # The status agrees with what happened: approved iff the agent exists.
                assert (status == "approved") == (name in agents), (approval_id, name, status, agents)
                try:
                    await host_request(daemon.host_socket, "deny", id=approval_id, note="changed my mind")
                except HostRefused as exc:
                    assert status != "pending", exc
                    denied_refused += 1
                else:
                    assert status == "pending" and name not in agents
                    denied_ok += 1
            agents_after = set((await host_request(daemon.host_socket, "list"))["agents"])
            assert agents_after == agents  # a deny never left an agent running, nor stopped one
    print(
        f"\nSIGKILL x{KILLS} mid spawn approvals: {KILLS * per_round} approvals, found after the kills {outcome}"
        f" ({finished_at_start} cut off after their spawn began, recorded approved at the next start);"
        f" a later deny refused {denied_refused}, accepted {denied_ok} (none of them over a running agent)"
    )

"""Approvals end to end: real config repos, real git tags, real agent processes being rebuilt."""

from __future__ import annotations

import os
import stat
from functools import partial
from pathlib import Path

import pytest
import trio
from lifecycle_support import commit_file, drain, eventually, helper_events, lifecycle_config, read_env

from hive_trio.core.coordinator import open_coordinator
from hive_trio.daemon import open_hive
from hive_trio.errors import Busy, Conflict, InvalidRequest, UnknownAgent
from hive_trio.lifecycle import Lifecycle, config_repos
from hive_trio.lifecycle.backends.nixos_container import NixosContainerBackend
from hive_trio.lifecycle.config_repos import rev_parse, run_git
from hive_trio.records import (
    ApprovalAddedEvent,
    ApprovalKind,
    ApprovalResolvedEvent,
    ApprovalStatus,
    TransientKind,
)


async def tag_target(repo: Path, tag: str) -> str:
    return await rev_parse(repo, f"refs/tags/{tag}")


async def test_apply_commit_end_to_end(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        await coord.ops.spawn("alpha")
        lifecycle = coord.ops
        assert isinstance(lifecycle, Lifecycle)
        old_pid = lifecycle.run_of("alpha").pid  # type: ignore[union-attr]
        config = coord.paths.agent_config("alpha")
        applied = coord.paths.agent_applied("alpha")
        deployed = await rev_parse(applied, "main")
        sha = await commit_file(config, "agent.toml", '[env]\nGREETING = "hej"\n', "say hej")

        with coord.subscribe() as events:
            approval = await coord.ops.request_apply_commit("alpha", sha[:10].upper(), "greet", requested_by="manager")
            added = [e for e in drain(events) if isinstance(e, ApprovalAddedEvent)]
        assert approval.status is ApprovalStatus.PENDING
        assert approval.kind is ApprovalKind.APPLY_COMMIT
        assert approval.commit_ref == sha[:10] and approval.fetched_sha == sha
        assert approval.requested_by == "manager"
        assert approval.diff is not None and '+GREETING = "hej"' in approval.diff
        assert added and added[0].id == approval.id and added[0].sha_short == sha[:12]
        assert '+GREETING = "hej"' in (added[0].diff or "")
        assert await tag_target(applied, f"proposal/{approval.id}") == sha
        assert await rev_parse(applied, "main") == deployed, "nothing is deployed before the approval"

        env_file = coord.paths.agent_notes("alpha") / "env.txt"
        env_file.unlink()
        with coord.subscribe() as events:
            resolved = await coord.ops.approve(approval.id, note="looks good")
            kinds = drain(events)
        assert resolved.status is ApprovalStatus.APPROVED and resolved.note == "looks good"
        assert await rev_parse(applied, "main") == sha
        assert await tag_target(applied, f"deployed/{approval.id}") == sha
        assert (await coord.require_agent("alpha")).deployed_sha == sha
        assert (await coord.agent_statuses(["alpha"]))[0].deployed_sha == sha[:12]
        assert any(isinstance(e, ApprovalResolvedEvent) and e.status is ApprovalStatus.APPROVED for e in kinds)
        # The agent was restarted onto the new config.
        env = await eventually(lambda: read_env(env_file), watch=[env_file.parent], what="the rebuilt agent's env")
        assert env["GREETING"] == "hej"
        assert lifecycle.run_of("alpha").pid != old_pid  # type: ignore[union-attr]
        manager = await helper_events(coord, "manager")
        assert {
            "event": "approval_resolved",
            "id": approval.id,
            "agent": "alpha",
            "status": "approved",
            "note": "looks good",
            "sha": sha,
            "tag": f"deployed/{approval.id}",
        } in manager
        assert {"event": "rebuilt", "agent": "alpha", "sha": sha, "tag": f"deployed/{approval.id}"} in manager
        # Resolving is compare-and-set: a second approve, or a deny now, changes nothing.
        with pytest.raises(Conflict, match="already approved"):
            await coord.ops.approve(approval.id)
        with pytest.raises(Conflict, match="already approved"):
            await coord.ops.deny(approval.id)


async def test_deny_leaves_the_applied_repo_alone_and_an_annotated_tag(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        await coord.ops.spawn("alpha")
        applied = coord.paths.agent_applied("alpha")
        deployed = await rev_parse(applied, "main")
        before = (applied / "agent.toml").read_text()
        sha = await commit_file(coord.paths.agent_config("alpha"), "agent.toml", "[env]\nX = 'y'\n", "x")
        approval = await coord.ops.request_apply_commit("alpha", sha, None, requested_by="manager")
        denied = await coord.ops.deny(approval.id, note="not this week")
        assert denied.status is ApprovalStatus.DENIED and denied.note == "not this week"
        assert await rev_parse(applied, "main") == deployed
        assert (applied / "agent.toml").read_text() == before
        assert (await coord.require_agent("alpha")).deployed_sha == deployed
        kind = await run_git(applied, ["cat-file", "-t", f"denied/{approval.id}"], what="cat-file")
        assert kind.stdout.strip() == b"tag", "an annotated tag"
        message = await config_repos.tag_message(applied, f"denied/{approval.id}")
        assert message is not None and "not this week" in message
        assert await tag_target(applied, f"denied/{approval.id}") == sha
        resolved = [e for e in await helper_events(coord, "manager") if e["event"] == "approval_resolved"]
        assert resolved[-1]["status"] == "denied" and resolved[-1]["tag"] == f"denied/{approval.id}"
        with pytest.raises(Conflict, match="already denied"):
            await coord.ops.approve(approval.id)


async def test_a_failed_build_tags_failed_and_keeps_main(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        lifecycle = coord.ops
        assert isinstance(lifecycle, Lifecycle)
        await coord.ops.spawn("alpha")
        pid = lifecycle.run_of("alpha").pid  # type: ignore[union-attr]
        applied = coord.paths.agent_applied("alpha")
        deployed = await rev_parse(applied, "main")
        sha = await commit_file(coord.paths.agent_config("alpha"), "agent.toml", "[agent]\ncommand = 'if'\n", "bad")
        approval = await coord.ops.request_apply_commit("alpha", sha, "broken", requested_by="manager")
        failed = await coord.ops.approve(approval.id, note="try it")
        assert failed.status is ApprovalStatus.FAILED
        assert failed.note is not None and "build failed" in failed.note and "not valid shell" in failed.note
        assert "try it" in failed.note
        assert await tag_target(applied, f"failed/{approval.id}") == sha
        assert await rev_parse(applied, "main") == deployed
        assert (await coord.require_agent("alpha")).deployed_sha == deployed
        assert lifecycle.run_of("alpha").pid == pid, "the running agent was not touched"  # type: ignore[union-attr]
        assert coord.transients() == {}
        resolved = [e for e in await helper_events(coord, "manager") if e["event"] == "approval_resolved"]
        assert resolved[-1]["status"] == "failed" and resolved[-1]["tag"] == f"failed/{approval.id}"


async def test_a_proposal_that_skips_the_deployed_config_fails(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        await coord.ops.spawn("alpha")
        config = coord.paths.agent_config("alpha")
        base = await rev_parse(config, "main")
        first = await commit_file(config, "one.txt", "1\n", "one")
        await run_git(config, ["checkout", "--quiet", "-b", "other", base], what="branch")
        second = await commit_file(config, "two.txt", "2\n", "two")
        a = await coord.ops.request_apply_commit("alpha", first, None, requested_by="manager")
        b = await coord.ops.request_apply_commit("alpha", second, None, requested_by="manager")
        assert (await coord.ops.approve(a.id)).status is ApprovalStatus.APPROVED
        failed = await coord.ops.approve(b.id)
        assert failed.status is ApprovalStatus.FAILED
        assert failed.note is not None and "does not build on the deployed config" in failed.note
        assert await rev_parse(coord.paths.agent_applied("alpha"), "main") == first


async def test_a_commit_that_cannot_be_fetched_fails_at_once(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        await coord.ops.spawn("alpha")
        with coord.subscribe() as events:
            approval = await coord.ops.request_apply_commit("alpha", "deadbeef12", "nope", requested_by="manager")
            seen = drain(events)
        assert approval.status is ApprovalStatus.FAILED
        assert approval.note is not None and "is not a commit" in approval.note
        assert any(isinstance(e, ApprovalResolvedEvent) and e.id == approval.id for e in seen)
        assert not any(isinstance(e, ApprovalAddedEvent) for e in seen)
        with pytest.raises(InvalidRequest):
            await coord.ops.request_apply_commit("alpha", "HEAD~1", None, requested_by="manager")
        with pytest.raises(UnknownAgent):
            await coord.ops.request_apply_commit("ghost", "abcdef1", None, requested_by="manager")
        assert len(await coord.list_approvals()) == 1


async def test_spawn_approvals(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        approval = await coord.ops.request_spawn("beta", "a reviewer", requested_by="manager")
        assert approval.kind is ApprovalKind.SPAWN and approval.status is ApprovalStatus.PENDING
        with pytest.raises(Conflict, match="already waiting"):
            await coord.ops.request_spawn("beta", None, requested_by="manager")
        assert await coord.find_agent("beta") is None, "nothing is spawned before the approval"
        resolved = await coord.ops.approve(approval.id)
        assert resolved.status is ApprovalStatus.APPROVED
        assert (await coord.require_agent("beta")).desired == "running"
        assert coord.is_running("beta")
        with pytest.raises(Conflict, match="already exists"):
            await coord.ops.request_spawn("beta", None, requested_by="manager")
        # A spawn approval whose agent appeared meanwhile fails with the reason, not half-done.
        again = await coord.propose_approval("gamma", ApprovalKind.SPAWN)
        await coord.ops.spawn("gamma")
        failed = await coord.ops.approve(again.id)
        assert failed.status is ApprovalStatus.FAILED and "already exists" in (failed.note or "")


async def test_one_approval_is_applied_once_at_a_time(short_tmp: Path) -> None:
    async with open_hive(lifecycle_config(short_tmp)) as hive:
        coord = hive.coordinator
        lifecycle = coord.ops
        assert isinstance(lifecycle, Lifecycle)
        await coord.ops.spawn("alpha")
        sha = await commit_file(coord.paths.agent_config("alpha"), "n.txt", "1\n", "n")
        approval = await coord.ops.request_apply_commit("alpha", sha, None, requested_by="manager")
        async with lifecycle._approval_guard(approval.id):
            with pytest.raises(Busy, match="being applied"):
                await coord.ops.approve(approval.id)
            with pytest.raises(Busy, match="being applied"):
                await coord.ops.deny(approval.id)
        assert (await coord.get_approval(approval.id)).status is ApprovalStatus.PENDING
        # An agent busy with another action refuses the rebuild; the approval stays pending.
        with coord.transient("alpha", TransientKind.STOPPING):
            with pytest.raises(Busy):
                await coord.ops.approve(approval.id)
        assert (await coord.get_approval(approval.id)).status is ApprovalStatus.PENDING
        assert (await coord.ops.approve(approval.id)).status is ApprovalStatus.APPROVED


SLOW_NIXOS = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$1" in
  status) [ -e "$FAKE_STATE/$2" ] || { echo gone; exit 1; }; cat "$FAKE_STATE/$2";;
  create) echo down > "$FAKE_STATE/$2";;
  start) echo up > "$FAKE_STATE/$2";;
  stop) echo down > "$FAKE_STATE/$2";;
  update) exec sleep 30;;
  destroy) rm -f "$FAKE_STATE/$2";;
esac
"""


@pytest.mark.timeout(30)
async def test_a_build_cancelled_midway_leaves_the_approval_pending(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crash safety: the approval flips only once the build's outcome is known (nixos-container backend)."""
    binary = short_tmp / "nixos-container"
    binary.write_text(SLOW_NIXOS)
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    (short_tmp / "containers").mkdir()
    monkeypatch.setenv("FAKE_LOG", str(short_tmp / "argv.log"))
    monkeypatch.setenv("FAKE_STATE", str(short_tmp / "containers"))
    config = lifecycle_config(short_tmp, backend="nixos-container")
    backend = NixosContainerBackend(
        hyperhive_flake="github:example/hyperhive",
        dashboard_port=7847,
        operator_pronouns="she/her",
        executable=str(binary),
        conf_dir=short_tmp / "conf",
        poll_interval=0.05,
    )
    (short_tmp / "conf").mkdir()
    async with open_coordinator(config, lifecycle=partial(Lifecycle, backend=backend)) as coord:
        lifecycle = coord.ops
        assert isinstance(lifecycle, Lifecycle)
        await coord.root_nursery.start(lifecycle.serve)
        await lifecycle.spawn("alpha")
        assert "--bind=" in (short_tmp / "conf" / "h-alpha.conf").read_text()
        assert "flake.nix" in os.listdir(coord.paths.agent_applied("alpha"))
        applied = coord.paths.agent_applied("alpha")
        deployed = await rev_parse(applied, "main")
        sha = await commit_file(coord.paths.agent_config("alpha"), "agent.nix", "{ ... }: { }\n", "minimal")
        approval = await lifecycle.request_apply_commit("alpha", sha, None, requested_by="manager")
        outcome: list[BaseException] = []

        async def approve() -> None:
            try:
                await lifecycle.approve(approval.id)
            except Exception as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(approve)
            await eventually(
                lambda: "update h-alpha" in (short_tmp / "argv.log").read_text(), watch=[short_tmp], what="the build"
            )
            assert coord.transient_of("alpha") is TransientKind.REBUILDING
            assert coord.cancel_transient("alpha")
        assert outcome and "cancelled" in str(outcome[0])
        assert (await coord.get_approval(approval.id)).status is ApprovalStatus.PENDING
        assert await rev_parse(applied, "main") == deployed
        assert coord.transients() == {}
        calls = (short_tmp / "argv.log").read_text()
        assert f"?ref=refs/tags/proposal/{approval.id}&rev={sha}#default" in calls

"""The approval flow: request_spawn / request_apply_commit, approve and deny, deploy with git tags, and
finishing deploys a daemon's end cut off.

Kept from hyperhive: the apply_commit flow (the proposal pinned as `proposal/<id>` in the applied repo,
`deployed/<id>`, `denied/<id>` and `failed/<id>` tags) and the manager's `approval_resolved` notice.
Changed: an approval stays `pending` while its build runs and flips only once the outcome is known, and
the resolution, the notice and the roster's `deployed_sha` commit together (`store.notices`). It never
parses a wire or serves a socket.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from hive_trio.core.coordinator import Coordinator
from hive_trio.errors import Busy, Conflict, HiveError, LifecycleFailed
from hive_trio.lifecycle import config_repos
from hive_trio.lifecycle.actions import LifecycleActions
from hive_trio.lifecycle.backends import Backend
from hive_trio.lifecycle.config_repos import MAIN
from hive_trio.records import Approval, ApprovalKind, ApprovalStatus, HelperRebuilt, TransientKind
from hive_trio.rules.names import validate_agent_name

log = logging.getLogger(__name__)


class Lifecycle(LifecycleActions):
    """The `LifecycleOps` the coordinator is built with when the hive has a backend: supervision
    (`Supervisor`), the verbs (`LifecycleActions`) and the approval flow (here)."""

    def __init__(self, coord: Coordinator, *, backend: Backend, manage_manager: bool = False) -> None:
        super().__init__(coord, backend=backend, manage_manager=manage_manager)
        self._approving: set[int] = set()

    async def request_spawn(self, name: str, description: str | None, *, requested_by: str) -> Approval:
        validate_agent_name(name)
        self.backend.check_name(name)
        if await self.coord.find_agent(name) is not None:
            raise Conflict(f"agent {name!r} already exists")
        for pending in await self.coord.list_approvals(status=ApprovalStatus.PENDING):
            if pending.kind is ApprovalKind.SPAWN and pending.agent == name:
                raise Conflict(f"a spawn of {name!r} is already waiting for the operator as approval #{pending.id}")
        return await self.coord.propose_approval(
            name, ApprovalKind.SPAWN, description=description, requested_by=requested_by
        )

    async def request_apply_commit(
        self, agent: str, commit_ref: str, description: str | None, *, requested_by: str
    ) -> Approval:
        ref = config_repos.normalize_commit_ref(commit_ref)
        await self.coord.require_agent(agent)
        approval = await self.coord.propose_approval(
            agent, ApprovalKind.APPLY_COMMIT, commit_ref=ref, description=description, requested_by=requested_by
        )
        try:
            return await self._fetch_proposal(approval, announce=True)
        except HiveError as exc:
            return await self.coord.resolve_approval(approval.id, ApprovalStatus.FAILED, note=str(exc))

    async def _fetch_proposal(self, approval: Approval, *, announce: bool) -> Approval:
        """Pin the proposed commit in the applied repo as `proposal/<id>` and record the diff to review."""
        assert approval.commit_ref is not None
        applied = self.paths.agent_applied(approval.agent)
        source = self.paths.agent_config(approval.agent)
        async with self._repo_lock(approval.agent):
            sha = await config_repos.fetch_commit(applied, source=source, commit_ref=approval.commit_ref)
            await config_repos.tag(applied, f"proposal/{approval.id}", sha)
            text = await config_repos.diff(applied, MAIN, sha)
        return await self.coord.pin_proposal(approval.id, fetched_sha=sha, diff=text, announce=announce)

    @asynccontextmanager
    async def _approval_guard(self, approval_id: int) -> AsyncIterator[None]:
        # The row stays `pending` while its build runs (so a crash never leaves it half-resolved);
        # this in-memory guard is what refuses a second approve or a deny meanwhile.
        if approval_id in self._approving:
            raise Busy(f"approval #{approval_id} is being applied right now")
        self._approving.add(approval_id)
        try:
            yield
        finally:
            self._approving.discard(approval_id)

    async def approve(self, approval_id: int, *, note: str | None = None) -> Approval:
        async with self._approval_guard(approval_id):
            approval = await self.coord.get_approval(approval_id)
            if approval.status is not ApprovalStatus.PENDING:
                raise Conflict(f"approval #{approval_id} is already {approval.status.value}")
            if approval.kind is ApprovalKind.SPAWN:
                return await self._approve_spawn(approval, note)
            return await self._approve_commit(approval, note)

    async def _approve_spawn(self, approval: Approval, note: str | None) -> Approval:
        try:
            await self.spawn(approval.agent)
        except Busy:
            raise
        except HiveError as exc:
            return await self._resolve(approval, ApprovalStatus.FAILED, _note(f"spawn failed: {exc}", note))
        return await self._resolve(approval, ApprovalStatus.APPROVED, note)

    async def _approve_commit(self, approval: Approval, note: str | None) -> Approval:
        """Decide (the ancestor check and the build), record (shielded), refresh the agent, announce."""
        name = approval.agent
        await self.coord.require_agent(name)
        if approval.fetched_sha is None:
            # Recorded but never fetched (the daemon died in between): fetch it now.
            try:
                approval = await self._fetch_proposal(approval, announce=False)
            except HiveError as exc:
                return await self._resolve(approval, ApprovalStatus.FAILED, _note(str(exc), note))
        sha = approval.fetched_sha
        assert sha is not None
        with self._action(name, TransientKind.REBUILDING):
            async with self._repo_lock(name):
                refusal = await self._refusal(approval, sha)
                # The outcome is decided: finish recording it even if cancelled now.
                with trio.CancelScope(shield=True):
                    if refusal is not None:
                        return await self._record_refusal(approval, sha, _note(refusal, note))
                    resolved = await self._deploy(name, approval, sha, note=note)
            try:
                await self._refresh(name, kick=f"You were rebuilt with approved config #{approval.id}.")
            except HiveError as exc:
                # The config is deployed; an agent that then fails to start is marked failed, not the approval.
                log.warning("%s deployed approval #%d but did not start: %s", name, approval.id, exc)
        await self._announce_rebuilt(HelperRebuilt(agent=name, sha=sha, tag=_deployed_tag(approval.id)))
        return resolved

    async def _refusal(self, approval: Approval, sha: str) -> str | None:
        """Why `sha` cannot be deployed (it does not build on what runs, or its build fails), or None."""
        applied = self.paths.agent_applied(approval.agent)
        deployed = await config_repos.rev_parse(applied, MAIN)
        if not await config_repos.is_ancestor(applied, deployed, sha):
            return (
                f"{sha[:12]} does not build on the deployed config {deployed[:12]}; "
                "rebase the change onto it and propose again"
            )
        try:
            await self.backend.build(self.unit(approval.agent), rev=sha, ref=f"refs/tags/proposal/{approval.id}")
        except LifecycleFailed as exc:
            return f"build failed: {exc}"
        return None

    async def _record_refusal(self, approval: Approval, sha: str, note: str) -> Approval:
        failed_tag = f"failed/{approval.id}"
        await config_repos.tag(self.paths.agent_applied(approval.agent), failed_tag, sha)
        return await self._resolve(approval, ApprovalStatus.FAILED, note, tag=failed_tag)

    async def _deploy(self, name: str, approval: Approval, sha: str, *, note: str | None) -> Approval:
        """After a good build: move `main`, tag `deployed/<id>`, then record it all with the manager's notice.

        Git goes first and the record last, in one transaction (approved, the roster's `deployed_sha`,
        the notice). A daemon that dies in between leaves the approval pending with `main` already
        moved; `finish_interrupted_deploys` completes it at the next start. Every step is idempotent.
        """
        applied = self.paths.agent_applied(name)
        deployed_tag = _deployed_tag(approval.id)
        await config_repos.fast_forward(applied, sha)
        await config_repos.tag(applied, deployed_tag, sha)
        return await self.coord.resolve_approval(
            approval.id,
            ApprovalStatus.APPROVED,
            note=note,
            tag=deployed_tag,
            roster_update={"deployed_sha": sha, "needs_update": False},
        )

    async def _finish_interrupted(self) -> None:
        await self.finish_interrupted_deploys()

    async def finish_interrupted_deploys(self) -> list[int]:
        """Daemon start: an approval still pending whose commit is already the applied `main`, while the
        roster records an older deploy, was cut off between its git steps and its record. Finish it."""
        finished = []
        for approval in await self.coord.list_approvals(status=ApprovalStatus.PENDING):
            if approval.kind is not ApprovalKind.APPLY_COMMIT or approval.fetched_sha is None:
                continue
            record = await self.coord.find_agent(approval.agent)
            applied = self.paths.agent_applied(approval.agent)
            if record is None or record.deployed_sha == approval.fetched_sha or not config_repos.is_repo(applied):
                continue
            try:
                async with self._repo_lock(approval.agent):
                    if await config_repos.rev_parse(applied, MAIN) != approval.fetched_sha:
                        continue
                    await self._deploy(approval.agent, approval, approval.fetched_sha, note=approval.note)
            except HiveError:
                log.exception("could not finish the interrupted deploy of approval #%d", approval.id)
                continue
            log.warning("finished approval #%d, interrupted by the daemon's end after its git steps", approval.id)
            finished.append(approval.id)
        return finished

    async def deny(self, approval_id: int, *, note: str | None = None) -> Approval:
        async with self._approval_guard(approval_id):
            current = await self.coord.get_approval(approval_id)
            tag_name: str | None = None
            if current.kind is ApprovalKind.APPLY_COMMIT and current.fetched_sha is not None:
                tag_name = f"denied/{approval_id}"
            # The decision and the manager's notice commit together; the tag follows. (A daemon that
            # dies in between leaves the denial recorded and told, without its git tag.)
            approval = await self.coord.resolve_approval(approval_id, ApprovalStatus.DENIED, note=note, tag=tag_name)
            if tag_name is not None and approval.fetched_sha is not None:
                message = f"denied by the operator: {note}" if note else "denied by the operator"
                try:
                    async with self._repo_lock(approval.agent):
                        await config_repos.tag(
                            self.paths.agent_applied(approval.agent), tag_name, approval.fetched_sha, message=message
                        )
                except HiveError:
                    log.warning("could not tag denied approval #%d", approval.id, exc_info=True)
            return approval

    async def _resolve(
        self, approval: Approval, status: ApprovalStatus, note: str | None, *, tag: str | None = None
    ) -> Approval:
        return await self.coord.resolve_approval(approval.id, status, note=note, tag=tag)


def _note(reason: str, operator_note: str | None) -> str:
    return reason if not operator_note else f"{reason} (operator's note: {operator_note})"


def _deployed_tag(approval_id: int) -> str:
    return f"deployed/{approval_id}"


__all__ = ["Lifecycle"]

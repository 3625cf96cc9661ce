"""Agent lifecycle: spawn, start, stop, restart, rebuild, destroy, crash restarts, reconcile, approvals.

This is hive-c0re's `lifecycle`/`actions` layer. Every operator or manager action runs under
`coordinator.transient(name, kind)`: the dashboard spinner shows for exactly as long as the action
runs, a second action on the same agent is refused (`Busy`), and `cancel_transient` cancels it.
The roster records intent (`desired`, `failed`, `deployed_sha`); the backend runs things; this
module keeps the two honest with each other, and is the only place that decides to restart.

Kept from hyperhive: HelperEvents to the manager for every lifecycle change, `kick_agent` after each
start, restart and rebuild, requeueing unacked deliveries when an agent (re)starts, and the
apply_commit flow with its git tags. Changed: crash restarts follow an OTP-style intensity/period
policy (hyperhive leaves restarts to systemd), approvals stay `pending` while their build runs and
flip only once the outcome is known, and deadlines of reconcile are the daemon's, not systemd's.

It never parses a wire or serves a socket; adapters call it through `coord.lifecycle`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Final

import trio

from hive_trio.core.coordinator import Coordinator
from hive_trio.errors import Busy, Conflict, HiveError, LifecycleFailed, NotFound
from hive_trio.lifecycle import config_repos
from hive_trio.lifecycle.backends import Backend, Run, Unit
from hive_trio.lifecycle.config_repos import MAIN
from hive_trio.lifecycle.restart_policy import RestartPolicy
from hive_trio.records import (
    MANAGER_AGENT,
    AgentRecord,
    Approval,
    ApprovalKind,
    ApprovalStatus,
    HelperContainerCrash,
    HelperDestroyed,
    HelperKilled,
    HelperRebuilt,
    HelperSpawned,
    TransientKind,
)
from hive_trio.rules.names import validate_agent_name

log = logging.getLogger(__name__)

RUNNING: Final = "running"
STOPPED: Final = "stopped"
DESTROYED_NOTE: Final = "agent destroyed"
# How many agents reconcile starts at once after a daemon restart.
RECONCILE_CONCURRENCY: Final = 16


class ActionCancelled(LifecycleFailed):
    """The operator cancelled the action (`cancel_transient`); whatever it finished stays done."""


class Lifecycle:
    """The `LifecycleOps` the coordinator hands to adapters; `serve` supervises what runs."""

    def __init__(self, coord: Coordinator, *, backend: Backend, manage_manager: bool = False) -> None:
        self.coord = coord
        self.config = coord.config
        self.paths = coord.paths
        self.backend = backend
        self.manage_manager = manage_manager
        self._watchers: trio.Nursery | None = None
        self._watchers_scope: trio.CancelScope | None = None
        self._runs: dict[str, Run] = {}
        self._policies: dict[str, RestartPolicy] = {}
        self._repo_locks: dict[str, trio.Lock] = {}
        self._approving: set[int] = set()
        # Runs stopped on purpose (by an action or shutdown): their exit is not a crash.
        self._deliberate: set[Run] = set()
        # Set when the action in flight on an agent ends; a crash is handled only after it.
        self._action_done: dict[str, trio.Event] = {}
        self._shutting_down = False

    # ================================================================== supervision
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reconcile, then supervise until cancelled; on the way out stop agents within `shutdown_grace`."""
        async with trio.open_nursery() as nursery:
            self._watchers = await nursery.start(self._run_watchers)
            try:
                await self.reconcile()
                task_status.started()
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True) as cleanup:
                    cleanup.deadline = trio.current_time() + self.config.shutdown_grace
                    await self.shutdown()
                assert self._watchers_scope is not None
                self._watchers_scope.cancel()

    async def _run_watchers(self, *, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        # Shielded: when the daemon is cancelled, agents must be stopped gracefully by `shutdown` first;
        # a watcher cancelled early would SIGKILL its agent. `serve` cancels this scope afterwards.
        with trio.CancelScope(shield=True) as scope:
            self._watchers_scope = scope
            async with trio.open_nursery() as nursery:
                task_status.started(nursery)
                await trio.sleep_forever()

    @property
    def watchers(self) -> trio.Nursery:
        if self._watchers is None:
            raise LifecycleFailed("the lifecycle supervisor is not running")
        return self._watchers

    async def shutdown(self) -> None:
        """Stop every agent this daemon runs (graceful, then forced), leaving `desired` as it is."""
        self._shutting_down = True
        grace = min(self.config.stop_grace, self.config.shutdown_grace)
        runs = dict(self._runs)
        if self.backend.units_outlive_daemon:
            # Containers are systemd units that keep running across a daemon restart; reconcile adopts them.
            runs = {}
        self._deliberate.update(runs.values())
        async with trio.open_nursery() as nursery:
            for run in runs.values():
                nursery.start_soon(partial(run.stop, grace=grace))
        for name, run in runs.items():
            if self._runs.get(name) is run:
                del self._runs[name]

    def unit(self, name: str) -> Unit:
        p = self.paths
        if name == MANAGER_AGENT:
            return Unit(
                name=MANAGER_AGENT,
                socket=p.manager_socket,
                socket_dir=p.manager_runtime,
                notes=p.manager_notes,
                claude=p.manager_claude,
                log=p.manager_log,
                pid_record=p.pid_record(MANAGER_AGENT),
                agents_dir=p.agents_state_root,
            )
        return Unit(
            name=name,
            socket=p.agent_socket(name),
            socket_dir=p.agent_runtime(name),
            notes=p.agent_notes(name),
            claude=p.agent_claude(name),
            log=p.agent_log(name),
            pid_record=p.pid_record(name),
            applied=p.agent_applied(name),
        )

    def run_of(self, name: str) -> Run | None:
        run = self._runs.get(name)
        return None if run is None or run.exited.is_set() else run

    def _policy(self, name: str) -> RestartPolicy:
        policy = self._policies.get(name)
        if policy is None:
            policy = self._policies[name] = RestartPolicy(
                intensity=self.config.restart_intensity, period=self.config.restart_period
            )
        return policy

    async def _launch(self, name: str, *, kick: str | None) -> Run:
        """Start `name` and watch it. Its unacked deliveries go back to its inbox first (SPEC §3)."""
        if self._shutting_down:
            raise LifecycleFailed("the daemon is shutting down")
        await self.coord.requeue_inflight(name)
        run = await self.backend.launch(self.unit(name), nursery=self.watchers)
        self._runs[name] = run
        self.watchers.start_soon(self._watch, name, run)
        if name != MANAGER_AGENT:
            self.coord.set_running(name, True)
        if kick is not None:
            await self.coord.kick_agent(name, kick)
        return run

    async def _halt(self, name: str, *, grace: float) -> None:
        run = self._runs.get(name)
        if run is not None:
            self._deliberate.add(run)
            await run.stop(grace=grace)
            if self._runs.get(name) is run:
                del self._runs[name]
        if name != MANAGER_AGENT:
            self.coord.set_running(name, False)

    async def _watch(self, name: str, run: Run) -> None:
        try:
            await run.exited.wait()
            if run in self._deliberate:
                self._deliberate.discard(run)
                return  # stopped on purpose; whoever stopped it owns what happens next
            # An exit while an action is in flight (say the agent dies during its own spawn) is
            # judged once that action has finished: then no action is in flight, and it is a crash.
            while (done := self._action_done.get(name)) is not None:
                await done.wait()
            if self._shutting_down or self._runs.get(name) is not run:
                return
            del self._runs[name]
            await self._crashed(name, run)
        except Exception:
            # A bug here must never take the supervisor (and with it the daemon) down.
            log.exception("supervising %s failed", name)

    async def _crashed(self, name: str, run: Run) -> None:
        is_manager = name == MANAGER_AGENT
        if not is_manager:
            self.coord.set_running(name, False)
            record = await self.coord.find_agent(name)
            if record is None or record.desired != RUNNING:
                return
        decision = self._policy(name).on_crash(trio.current_time())
        note = f"{name} {run.exit_reason}; {decision.describe()}"
        log.warning("%s", note)
        if not is_manager:
            await self.coord.notify_manager(HelperContainerCrash(agent=name, note=note))
        if not decision.restart:
            if not is_manager:
                await self._mark_failed(name, note)
            return
        try:
            if is_manager:
                # The manager has no card, so no spinner; nothing else ever acts on it.
                await self._launch(name, kick="You were restarted after a crash.")
            else:
                with self._action(name, TransientKind.RESTARTING):
                    await self._launch(name, kick="You were restarted after a crash.")
        except Busy:
            return  # an operator action started in the meantime and takes over
        except HiveError as exc:
            if not is_manager:
                await self._mark_failed(name, f"could not restart after a crash: {exc}")
            else:
                log.error("could not restart the manager: %s", exc)

    async def _mark_failed(self, name: str, reason: str) -> None:
        await self.coord.mark_failed(name, reason)

    @contextmanager
    def _action(self, name: str, kind: TransientKind) -> Iterator[trio.CancelScope]:
        """The agent's cancel scope for one action; an operator cancel surfaces as `ActionCancelled`."""
        with self.coord.transient(name, kind) as scope:
            done = self._action_done[name] = trio.Event()
            try:
                yield scope
            finally:
                if self._action_done.get(name) is done:
                    del self._action_done[name]
                done.set()
        if scope.cancelled_caught:
            raise ActionCancelled(f"{kind.value} {name} was cancelled by the operator")

    def _repo_lock(self, name: str) -> trio.Lock:
        lock = self._repo_locks.get(name)
        if lock is None:
            lock = self._repo_locks[name] = trio.Lock()
        return lock

    # ================================================================== reconcile
    async def reconcile(self) -> None:
        """Daemon start: stop orphans, finish cut-off deploys, register every socket, adopt or restart."""
        stopped = await self.backend.reap_orphans(grace=self.config.stop_grace)
        if stopped:
            log.warning("stopped agents a previous daemon left running: %s", ", ".join(stopped))
        await self.finish_interrupted_deploys()
        records = await self.coord.agent_records()
        limiter = trio.CapacityLimiter(RECONCILE_CONCURRENCY)
        async with trio.open_nursery() as nursery:
            for record in records:
                nursery.start_soon(self._reconcile_one, record, limiter)
        if self.manage_manager:
            await self._start_manager()

    async def _reconcile_one(self, record: AgentRecord, limiter: trio.CapacityLimiter) -> None:
        name = record.name
        async with limiter:
            try:
                await self.coord.register_agent(name)
            except Exception as exc:
                log.exception("could not serve the socket of %s", name)
                await self._mark_failed(name, f"its socket could not be served: {exc}")
                return
            try:
                with self._action(name, TransientKind.STARTING):
                    run = await self.backend.adopt(self.unit(name), nursery=self.watchers)
                    if run is not None:
                        self._runs[name] = run
                        self.watchers.start_soon(self._watch, name, run)
                        self.coord.set_running(name, True)
                        return
                    self.coord.set_running(name, False)
                    if record.desired != RUNNING or record.failed:
                        return
                    if not config_repos.is_repo(self.paths.agent_applied(name)):
                        # A spawn cut off by the daemon's end before its repos existed: finish it (every
                        # step is idempotent) rather than leave an agent without config.
                        sha = await self._prepare_repos(name)
                        await self.backend.build(self.unit(name), rev=sha)
                        await self.coord.record_deployed(name, sha)
                        log.warning("finished the spawn of %s, interrupted by the daemon's end", name)
                    await self._launch(name, kick="You were started again after the hive daemon restarted.")
            except HiveError as exc:
                await self._mark_failed(name, f"could not start after the daemon restarted: {exc}")

    async def _start_manager(self) -> None:
        await trio.to_thread.run_sync(self.paths.ensure_manager_dirs)
        if not self.coord.is_registered(MANAGER_AGENT):
            await self.coord.register_manager()
        try:
            run = await self.backend.adopt(self.unit(MANAGER_AGENT), nursery=self.watchers)
            if run is not None:
                self._runs[MANAGER_AGENT] = run
                self.watchers.start_soon(self._watch, MANAGER_AGENT, run)
                return
            await self._launch(MANAGER_AGENT, kick="The hive daemon started.")
        except HiveError as exc:
            log.error("could not start the manager: %s", exc)

    # ================================================================== operator actions
    async def _prepare_repos(self, name: str) -> str:
        """Dirs, the config repo (starter commit) and the applied repo; keep what a tombstone left."""
        await trio.to_thread.run_sync(self.paths.ensure_agent_dirs, name)
        config_dir = self.paths.agent_config(name)
        applied = self.paths.agent_applied(name)
        async with self._repo_lock(name):
            if not config_repos.is_repo(config_dir):
                files = self.backend.starter_files(self.unit(name))
                await config_repos.init_config_repo(config_dir, files, message=f"starter config for {name}")
            if not config_repos.is_repo(applied):
                return await config_repos.init_applied_repo(applied, source=config_dir)
            return await config_repos.rev_parse(applied, MAIN)

    async def spawn(self, name: str, *, parent: str | None = None) -> AgentRecord:
        validate_agent_name(name)
        self.backend.check_name(name)
        if parent is not None and parent != MANAGER_AGENT:
            validate_agent_name(parent)
        if await self.coord.find_agent(name) is not None:
            raise Conflict(f"agent {name!r} already exists")
        with self._action(name, TransientKind.SPAWNING):
            await self.coord.record_spawn(name, parent=parent)
            try:
                sha = await self._prepare_repos(name)
                await self.coord.set_desired(name, RUNNING, deployed_sha=sha)
                await self.coord.register_agent(name)
                await self.backend.build(self.unit(name), rev=sha)
                self._policy(name).reset()
                await self._launch(name, kick=f"You were spawned as {name}.")
            except (HiveError, trio.Cancelled) as exc:
                reason = "spawn was interrupted" if isinstance(exc, trio.Cancelled) else f"spawn failed: {exc}"
                with trio.CancelScope(shield=True):
                    await self._mark_failed(name, reason)
                raise
        await self.coord.notify_manager(HelperSpawned(agent=name))
        return await self.coord.require_agent(name)

    async def start(self, name: str) -> None:
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.STARTING):
            await self.coord.set_desired(name, RUNNING)
            self._policy(name).reset()
            if self.run_of(name) is not None:
                await self.coord.publish_status(name)
                return  # already running: starting is idempotent, as `systemctl start` is
            if not self.coord.is_registered(name):
                await self.coord.register_agent(name)
            try:
                await self._launch(name, kick="You were started by the operator.")
            except HiveError as exc:
                await self._mark_failed(name, f"start failed: {exc}")
                raise

    async def stop(self, name: str, *, graceful: bool = True) -> None:
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.STOPPING):
            # Recorded first: an operator stop is never undone by a crash restart or a daemon restart.
            await self.coord.set_desired(name, STOPPED)
            await self._halt(name, grace=self.config.stop_grace if graceful else 0.0)
        await self.coord.notify_manager(HelperKilled(agent=name))

    async def restart(self, name: str) -> None:
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.RESTARTING):
            await self.coord.set_desired(name, RUNNING)
            self._policy(name).reset()
            await self._halt(name, grace=self.config.stop_grace)
            if not self.coord.is_registered(name):
                await self.coord.register_agent(name)
            try:
                await self._launch(name, kick="You were restarted by the operator.")
            except HiveError as exc:
                await self._mark_failed(name, f"restart failed: {exc}")
                raise

    async def rebuild(self, name: str) -> None:
        """Rebuild from the applied repo's `main`; a running agent picks the result up (restarted if needed)."""
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.REBUILDING):
            sha = await config_repos.rev_parse(self.paths.agent_applied(name), MAIN)
            await self.backend.build(self.unit(name), rev=sha)
            await self.coord.record_deployed(name, sha)
            await self._refresh(name, kick="You were rebuilt from your applied config.")
        await self._announce_rebuilt(HelperRebuilt(agent=name, sha=sha, tag=None))

    async def _announce_rebuilt(self, event: HelperRebuilt) -> None:
        """The manager hears of every rebuild; the agent too, since its own config changed."""
        await self.coord.notify_manager(event)
        await self.coord.notify_agent(event.agent, event)

    async def _refresh(self, name: str, *, kick: str) -> None:
        """After a successful build: a running agent is restarted onto it (or reloaded in place)."""
        if self.run_of(name) is None:
            return
        if self.backend.applies_live:
            await self.coord.kick_agent(name, kick)
            return
        await self._halt(name, grace=self.config.stop_grace)
        try:
            await self._launch(name, kick=kick)
        except HiveError as exc:
            await self._mark_failed(name, f"could not start after the rebuild: {exc}")
            raise

    async def destroy(self, name: str, *, purge: bool = False) -> None:
        await self.coord.require_agent(name)
        with self._action(name, TransientKind.DESTROYING):
            await self._halt(name, grace=self.config.stop_grace)
            await self.backend.remove(self.unit(name))
            self.coord.unregister_agent(name)
            await self.coord.forget_agent(name, note=DESTROYED_NOTE)
            self._policies.pop(name, None)
            if purge:
                await self._purge_dirs(name)
        await self.coord.publish_status(name)  # the row is gone: `container_removed`
        await self.coord.notify_manager(HelperDestroyed(agent=name))

    async def purge_tombstone(self, name: str) -> None:
        validate_agent_name(name)
        if await self.coord.find_agent(name) is not None:
            raise Conflict(f"{name!r} is a live agent; destroy it first")
        if name not in self.coord.kept_state_names():
            raise NotFound(f"there is no tombstone named {name!r}")
        with self._action(name, TransientKind.DESTROYING):
            await self._purge_dirs(name)

    async def _purge_dirs(self, name: str) -> None:
        dirs = [self.paths.agent_state_root(name), self.paths.agent_applied(name), self.paths.agent_runtime(name)]
        logs = [self.paths.agent_log(name), Path(str(self.paths.agent_log(name)) + ".1")]

        def purge() -> None:
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
            for f in logs:
                f.unlink(missing_ok=True)

        await trio.to_thread.run_sync(purge)

    # ================================================================== approvals
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
        applied = self.paths.agent_applied(name)
        with self._action(name, TransientKind.REBUILDING):
            async with self._repo_lock(name):
                deployed = await config_repos.rev_parse(applied, MAIN)
                reason: str | None = None
                if not await config_repos.is_ancestor(applied, deployed, sha):
                    reason = (
                        f"{sha[:12]} does not build on the deployed config {deployed[:12]}; "
                        "rebase the change onto it and propose again"
                    )
                else:
                    try:
                        await self.backend.build(self.unit(name), rev=sha, ref=f"refs/tags/proposal/{approval.id}")
                    except LifecycleFailed as exc:
                        reason = f"build failed: {exc}"
                if reason is not None:
                    failed_tag = f"failed/{approval.id}"
                    with trio.CancelScope(shield=True):
                        await config_repos.tag(applied, failed_tag, sha)
                        return await self._resolve(approval, ApprovalStatus.FAILED, _note(reason, note), tag=failed_tag)
                # The build is good, so the outcome is decided: finish recording it even if cancelled.
                deployed_tag = f"deployed/{approval.id}"
                with trio.CancelScope(shield=True):
                    resolved = await self._deploy(name, approval, sha, note=note)
            try:
                await self._refresh(name, kick=f"You were rebuilt with approved config #{approval.id}.")
            except HiveError as exc:
                # The config is deployed; an agent that then fails to start is marked failed, not the approval.
                log.warning("%s deployed approval #%d but did not start: %s", name, approval.id, exc)
        await self._announce_rebuilt(HelperRebuilt(agent=name, sha=sha, tag=deployed_tag))
        return resolved

    async def _deploy(self, name: str, approval: Approval, sha: str, *, note: str | None) -> Approval:
        """After a good build: move `main`, tag `deployed/<id>`, then record it all with the manager's notice.

        Git goes first and the record last, in one transaction (approved, the roster's `deployed_sha`,
        the notice). A daemon that dies in between leaves the approval pending with `main` already
        moved; `finish_interrupted_deploys` completes it at the next start. Every step is idempotent.
        """
        applied = self.paths.agent_applied(name)
        deployed_tag = f"deployed/{approval.id}"
        await config_repos.fast_forward(applied, sha)
        await config_repos.tag(applied, deployed_tag, sha)
        return await self.coord.resolve_approval(
            approval.id,
            ApprovalStatus.APPROVED,
            note=note,
            tag=deployed_tag,
            roster_update={"deployed_sha": sha, "needs_update": False},
        )

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


__all__ = ["ActionCancelled", "Lifecycle"]

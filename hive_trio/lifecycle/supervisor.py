"""Agent supervision: launch, watch, crash restarts, reconcile at daemon start, and shutdown.

This is hive-c0re's supervision half of `lifecycle`. The backend runs things; the roster (through the
coordinator) records intent (`desired`, `failed`, `deployed_sha`); this module keeps the two honest with
each other, and is the only place that decides to restart. Crash restarts follow an OTP-style
intensity/period policy (hyperhive leaves restarts to systemd); requeueing unacked deliveries happens on
every launch (SPEC §3). The operator's verbs are in `lifecycle.actions`, the approval flow in
`lifecycle.approvals`; `hive_trio.lifecycle.Lifecycle` is the three composed.

Every action runs under `coordinator.transient(name, kind)`: the dashboard spinner shows for exactly as
long as the action runs, a second action on the same agent is refused (`Busy`), and `cancel_transient`
cancels it. It never parses a wire or serves a socket, and changes durable state only through the
coordinator.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from typing import Final

import trio

from hive_trio.core.coordinator import Coordinator
from hive_trio.errors import Busy, HiveError, LifecycleFailed
from hive_trio.lifecycle import config_repos
from hive_trio.lifecycle.backends import Backend, Run, Unit
from hive_trio.lifecycle.config_repos import MAIN
from hive_trio.lifecycle.drift import ConfigDrift
from hive_trio.lifecycle.restart_policy import RestartPolicy
from hive_trio.records import MANAGER_AGENT, AgentRecord, HelperContainerCrash, TransientKind

log = logging.getLogger(__name__)

RUNNING: Final = "running"
STOPPED: Final = "stopped"
# How many agents reconcile starts at once after a daemon restart.
RECONCILE_CONCURRENCY: Final = 16


class ActionCancelled(LifecycleFailed):
    """The operator cancelled the action (`cancel_transient`); whatever it finished stays done."""


class Supervisor:
    """What runs, and watching it; `serve` reconciles, then supervises until cancelled."""

    def __init__(self, coord: Coordinator, *, backend: Backend, manage_manager: bool = False) -> None:
        self.coord = coord
        self.config = coord.config
        self.paths = coord.paths
        self.backend = backend
        self.manage_manager = manage_manager
        self._watchers: trio.Nursery | None = None
        self._watchers_scope: trio.CancelScope | None = None
        self._runs: dict[str, Run] = {}
        # The cancel scope each run's harness channel is served in; cancelled when the run exits.
        self._channel_ends: dict[Run, trio.CancelScope] = {}
        self._policies: dict[str, RestartPolicy] = {}
        self._repo_locks: dict[str, trio.Lock] = {}
        # Runs stopped on purpose (by an action or shutdown): their exit is not a crash.
        self._deliberate: set[Run] = set()
        # Set when the action in flight on an agent ends; a crash is handled only after it.
        self._action_done: dict[str, trio.Event] = {}
        self._shutting_down = False
        # What each run was started from, for `needs_update` (lifecycle/drift.py).
        self.drift = ConfigDrift(coord, backend)

    # ================================================================== supervision
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reconcile, then supervise until cancelled; on the way out stop agents within `shutdown_grace`."""
        async with trio.open_nursery() as nursery:
            self._watchers = await nursery.start(self._run_watchers)
            nursery.start_soon(self._serve_drift_checks)
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
        run = await self.backend.launch(self.unit(name), nursery=self.watchers, on_exit=partial(self._exited, name))
        self._supervise(name, run)
        harness_socket = getattr(run, "harness_socket", None)
        if harness_socket is not None:
            # The run's harness channel (issue 10), served for as long as this run lives: `_exited`
            # cancels `ended` first thing.
            ended = self._channel_ends[run] = trio.CancelScope()
            self.watchers.start_soon(self.coord.reports.serve_run_channel, name, harness_socket, ended)
        await self.drift.launched(self.unit(name))
        if name != MANAGER_AGENT:
            self.coord.set_running(name, True)
        if kick is not None:
            await self.coord.kick_agent(name, kick)
        return run

    def _supervise(self, name: str, run: Run) -> None:
        """Track `run` as `name`'s (a launch or an adopted unit); its exit comes to `_exited`.

        Called right after `launch`/`adopt` returned, with no checkpoint between: the run's own task has
        not run yet, so it cannot have called `_exited` before the run is known here.
        """
        self._runs[name] = run

    async def _bring_up(self, name: str, *, kick: str) -> None:
        """The start sequence every action shares: a fresh crash budget, the socket, then the launch."""
        self._policy(name).reset()
        if not self.coord.is_registered(name):
            await self.coord.register_agent(name)
        await self._launch(name, kick=kick)

    @asynccontextmanager
    async def _failure_recorded(self, name: str, what: str, *, interrupted: str | None = None) -> AsyncIterator[None]:
        """Mark `name` failed (`what: reason`) if the block raises a `HiveError`, then re-raise; with
        `interrupted`, a cancellation is recorded too (a spawn cut off half-way must not look healthy)."""
        try:
            yield
        except (HiveError, trio.Cancelled) as exc:
            if isinstance(exc, trio.Cancelled) and interrupted is None:
                raise
            reason = interrupted if isinstance(exc, trio.Cancelled) else f"{what}: {exc}"
            assert reason is not None
            with trio.CancelScope(shield=True):
                await self._mark_failed(name, reason)
            raise

    async def _halt(self, name: str, *, grace: float) -> None:
        run = self._runs.get(name)
        try:
            if run is not None:
                self._deliberate.add(run)
                await run.stop(grace=grace)
        finally:
            # Also when the stop was cancelled (and so forced): a run that has exited is forgotten and shown
            # stopped, so the roster never shows running an agent whose process is gone.
            if run is None or run.exited.is_set():
                if run is not None and self._runs.get(name) is run:
                    del self._runs[name]
                if name != MANAGER_AGENT:
                    self.coord.set_running(name, False)

    async def _exited(self, name: str, run: Run) -> None:
        """`run` has exited (`exited` is set): judge it. Runs in the run's own watching task (the backend's
        `on_exit`), so a run costs no task of the supervisor's beside it."""
        ended = self._channel_ends.pop(run, None)
        if ended is not None:
            ended.cancel()
        try:
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
            if run.exited_cleanly and name != MANAGER_AGENT:
                await self._stopped_itself(name)
                return
            await self._crashed(name, run)
        except Exception:
            # A bug here must never take the supervisor (and with it the daemon) down.
            log.exception("supervising %s failed", name)

    async def _stopped_itself(self, name: str) -> None:
        """Status 0 is the agent's own clean exit (a harness told to stop, a one-shot command): a stop.
        hive-c0re counted every exit as a crash, so `claude -p` restarted in a loop until it was failed."""
        log.info("%s exited with status 0; it stays stopped", name)
        await self.coord.set_desired(name, STOPPED)
        self.coord.set_running(name, False)  # announced after the record says stopped

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

    async def check_needs_update(self, names: list[str] | None = None) -> list[str]:
        """Check running agents (all, or `names`) for drift from what they were started with."""
        stale = []
        for name in names if names is not None else list(self._runs):
            if name != MANAGER_AGENT and self.run_of(name) is not None and await self.drift.check(self.unit(name)):
                stale.append(name)
        return stale

    async def _serve_drift_checks(self) -> None:
        interval = self.config.needs_update_interval
        if interval <= 0:
            return
        while True:
            await trio.sleep(interval)
            try:
                await self.check_needs_update()
            except Exception:
                log.exception("the needs_update check failed")

    async def _finish_interrupted(self) -> None:
        """Reconcile's first step after the orphans: finish what a previous daemon cut off (approvals)."""

    # ================================================================== reconcile
    async def reconcile(self) -> None:
        """Daemon start: stop orphans, finish cut-off deploys, register every socket, adopt or restart."""
        stopped = await self.backend.reap_orphans(grace=self.config.stop_grace)
        if stopped:
            log.warning("stopped agents a previous daemon left running: %s", ", ".join(stopped))
        await self._finish_interrupted()
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
                    run = await self.backend.adopt(
                        self.unit(name), nursery=self.watchers, on_exit=partial(self._exited, name)
                    )
                    if run is not None:
                        self._supervise(name, run)
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
            run = await self.backend.adopt(
                self.unit(MANAGER_AGENT), nursery=self.watchers, on_exit=partial(self._exited, MANAGER_AGENT)
            )
            if run is not None:
                self._supervise(MANAGER_AGENT, run)
                return
            await self._launch(MANAGER_AGENT, kick="The hive daemon started.")
        except HiveError as exc:
            log.error("could not start the manager: %s", exc)

    # ================================================================== repos
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


__all__ = ["RECONCILE_CONCURRENCY", "RUNNING", "STOPPED", "ActionCancelled", "Supervisor"]

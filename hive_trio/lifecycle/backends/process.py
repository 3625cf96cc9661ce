"""The `process` backend (the default): each agent is a supervised child process of the daemon.

The command is `config.agent_command` (or the `command` in the agent's applied `agent.toml`), with
`{name}`, `{socket}` and `{state_dir}` substituted shell-quoted, run by `/bin/sh -c` in the agent's
state dir, in a session (and process group) of its own so that a shell template's children are
signalled with it. Its stdout and stderr go through a pipe into a size-rotated log file. Stop is
SIGTERM to the group, then SIGKILL after the grace period.

Each launch also makes a connected socketpair: the child inherits one end (its number in
`HIVE_HARNESS_FD`) and the run keeps the other as `harness_socket`, which the lifecycle hands to the
coordinator to serve as that agent's harness channel (docs/DECISIONS.md). The channel has no path, so
no other process can reach it.

Each start writes a pid record (pid, process start time, boot id); after a daemon SIGKILL the next
daemon finds the processes its predecessor left behind and stops them before starting fresh ones, and
the start time makes sure a recycled pid is never mistaken for one of ours.

Where hive-c0re asks systemd to run a container, this backend is the supervisor itself; restart
decisions stay in the lifecycle layer. It never touches the database or sends a message.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from hive_trio.errors import LifecycleFailed
from hive_trio.lifecycle import config_repos
from hive_trio.lifecycle.backends import OnExit, Run, Unit
from hive_trio.lifecycle.backends.agent_log import AgentLog, LogBudget
from hive_trio.records import PidRecord, RecordError, from_json, to_json
from hive_trio.rules.strict_dirs import UnsafePath, read_regular, write_replacing
from hive_trio.service.journal import current_agent

log = logging.getLogger(__name__)

AGENT_TOML: Final = "agent.toml"
SHELL: Final = "/bin/sh"
_PLACEHOLDER: Final = re.compile(r"\{(name|socket|state_dir)\}")
_ENV_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The agent's identity and wiring are the daemon's to set; an agent.toml may not override them.
RESERVED_ENV_PREFIX: Final = "HIVE_"
RESERVED_ENV: Final = frozenset({"CLAUDE_CONFIG_DIR"})
HARNESS_FD_ENV: Final = "HIVE_HARNESS_FD"
# After the leader exits, the rest of its group gets this long to finish writing before SIGKILL.
STRAGGLER_GRACE: Final = 2.0
# How long to wait for the kernel to reap a SIGKILLed group before giving up on waiting.
KILL_WAIT: Final = 5.0
_CHUNK: Final = 65536
_BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")


# ------------------------------------------------------------------------------------ pure pieces


def render_command(template: str, *, name: str, socket: Path, state_dir: Path) -> str:
    """Substitute `{name}`, `{socket}`, `{state_dir}` shell-quoted; every other brace is left alone."""
    values = {"name": name, "socket": str(socket), "state_dir": str(state_dir)}
    return _PLACEHOLDER.sub(lambda m: shlex.quote(values[m.group(1)]), template)


@attrs.frozen
class AgentSpec:
    """What an applied `agent.toml` says about running the agent (process backend)."""

    command: str | None = None
    env: Mapping[str, str] = attrs.field(factory=dict)


def parse_agent_toml(text: str | None) -> AgentSpec:
    """Read an `agent.toml`; anything unknown or mistyped is an error naming the key (a failed build)."""
    if text is None:
        return AgentSpec()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LifecycleFailed(f"{AGENT_TOML} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"agent", "env"})
    if unknown:
        raise LifecycleFailed(f"{AGENT_TOML}: unknown table(s) {', '.join(unknown)}; expected [agent] and [env]")
    agent = _table(data, "agent")
    extra = sorted(set(agent) - {"command", "description"})
    if extra:
        raise LifecycleFailed(f"{AGENT_TOML}: unknown key(s) in [agent]: {', '.join(extra)}")
    command = agent.get("command")
    if command is not None and (not isinstance(command, str) or not command.strip()):
        raise LifecycleFailed(f"{AGENT_TOML}: [agent] command must be a non-empty string")
    if not isinstance(agent.get("description", ""), str):
        raise LifecycleFailed(f"{AGENT_TOML}: [agent] description must be a string")
    env: dict[str, str] = {}
    for key, value in _table(data, "env").items():
        if _ENV_KEY.fullmatch(key) is None:
            raise LifecycleFailed(f"{AGENT_TOML}: [env] {key!r} is not an environment variable name")
        if key.startswith(RESERVED_ENV_PREFIX) or key in RESERVED_ENV:
            raise LifecycleFailed(f"{AGENT_TOML}: [env] {key} is set by the daemon and cannot be overridden")
        if not isinstance(value, str):
            raise LifecycleFailed(f"{AGENT_TOML}: [env] {key} must be a string")
        if "\x00" in value:
            raise LifecycleFailed(f"{AGENT_TOML}: [env] {key} contains a NUL byte")
        env[key] = value
    return AgentSpec(command=command, env=env)


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise LifecycleFailed(f"{AGENT_TOML}: {key} must be a table ([{key}])")
    return value


def agent_environment(
    unit: Unit, spec: AgentSpec, *, operator_pronouns: str, base: Mapping[str, str]
) -> dict[str, str]:
    """The child's environment: the daemon's own (minus hive settings), the spec's, then the wiring."""
    env = {k: v for k, v in base.items() if not k.startswith(RESERVED_ENV_PREFIX) and k not in RESERVED_ENV}
    env.update(spec.env)
    env.update(
        HIVE_AGENT=unit.name,
        HIVE_SOCKET=str(unit.socket),
        HIVE_STATE_DIR=str(unit.notes),
        HIVE_OPERATOR_PRONOUNS=operator_pronouns,
        CLAUDE_CONFIG_DIR=str(unit.claude),
    )
    if unit.agents_dir is not None:
        env["HIVE_AGENTS_DIR"] = str(unit.agents_dir)
    return env


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


def starter_agent_toml(name: str) -> str:
    return f"""\
# hive-trio config for agent "{name}" (process backend).
#
# This repo holds the agent's *proposed* config. The manager commits here; a commit reaches the
# running agent only after the operator approves it (request_apply_commit, then approve), and the
# approved history lives in the daemon's applied repo.

[agent]
# The command that runs this agent, through /bin/sh, in its state dir. Leave it out to use the
# daemon's --agent-command template. {{name}}, {{socket}} and {{state_dir}} are substituted, shell-quoted.
# command = "exec my-harness --socket {{socket}}"

[env]
# Extra environment for the agent. HIVE_* and CLAUDE_CONFIG_DIR are set by the daemon.
# EXAMPLE_GREETING = "hello"
"""


# ------------------------------------------------------------------------------------ /proc and signals


def read_boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return "unknown"


def read_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Signal every process in group `pgid`; False when the group is already empty."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("not allowed to signal process group %d", pgid)
        return False
    return True


def _write_record(path: Path, record: PidRecord) -> None:
    write_replacing(path, to_json(record).encode())


def _remove_record(path: Path, pid: int) -> None:
    """Remove `path` if it still describes `pid` (a newer start may already have replaced it)."""
    try:
        current: PidRecord = from_json(read_regular(path).decode(), PidRecord)
    except (OSError, RecordError, UnicodeDecodeError, UnsafePath):
        return
    if current.pid == pid:
        path.unlink(missing_ok=True)


def _load_records(root: Path) -> list[tuple[Path, PidRecord | None]]:
    out: list[tuple[Path, PidRecord | None]] = []
    if not root.is_dir():
        return out
    for path in sorted(root.glob("*.json")):
        try:
            out.append((path, from_json(read_regular(path).decode(), PidRecord)))
        except (OSError, RecordError, UnicodeDecodeError, UnsafePath):
            out.append((path, None))
    return out


def _unrecorded_agents(runtime_dir: Path, own_pid: int) -> list[tuple[int, str]]:
    """(pid, agent) of every live process whose environment has a `HIVE_SOCKET` under `runtime_dir`: the
    agents of this hive (and their children) that some daemon started. Run before this daemon starts any."""
    marker = b"HIVE_SOCKET=" + os.fsencode(runtime_dir) + b"/"
    found: list[tuple[int, str]] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == own_pid:
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        if any(var.startswith(marker) for var in environ):
            agent = next((v[len(b"HIVE_AGENT=") :] for v in environ if v.startswith(b"HIVE_AGENT=")), b"?")
            found.append((int(entry.name), agent.decode(errors="replace")))
    return found


async def terminate_group(
    pgid: int, *, exited: Callable[[], Awaitable[object]], grace: float, kill_group: bool
) -> None:
    """SIGTERM the process group, wait up to `grace` for `exited`, then SIGKILL: the one stop sequence.

    With `kill_group` the group is SIGKILLed whatever happened (an orphan's children may outlive their
    leader; `exited` may return on its own timeout). Without it only a leader that did not exit in time
    (or a wait cut off by cancellation) is killed, and then waited for briefly, shielded, so no orphan
    is left behind.
    """
    signal_group(pgid, signal.SIGTERM)
    done = False
    try:
        with trio.move_on_after(max(0.0, grace)):
            await exited()
            done = True
    finally:
        if kill_group or not done:
            signal_group(pgid, signal.SIGKILL)
            if not done:
                with trio.CancelScope(shield=True), trio.move_on_after(KILL_WAIT):
                    await exited()


async def _wait_exit(pid: int, *, grace: float) -> None:
    """Wait up to `grace` seconds for a process that is not our child to exit.

    A pidfd makes this a wait rather than a poll; kernels without pidfd_open get a short poll.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):
        for _ in range(max(1, int(grace / 0.05))):
            if read_start_ticks(pid) is None:
                return
            await trio.sleep(0.05)
        return
    try:
        with trio.move_on_after(grace):
            await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------ one run


class ProcessRun:
    """One start of an agent process; `supervise` is the one task that waits on it."""

    def __init__(
        self, *, name: str, pid: int, straggler_grace: float, harness_socket: socket.socket | None = None
    ) -> None:
        self.name = name
        # The daemon's end of this run's harness channel; whoever serves it closes it.
        self.harness_socket = harness_socket
        self._pid = pid
        # start_new_session makes the child a session and group leader: its pgid is its pid.
        self.pgid = pid
        self.straggler_grace = straggler_grace
        self.exited = trio.Event()
        self.returncode: int | None = None
        self.stop_requested = False

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def exit_reason(self) -> str:
        return describe_exit(self.returncode)

    @property
    def exited_cleanly(self) -> bool:
        return self.returncode == 0 and not self.stop_requested

    async def stop(self, *, grace: float) -> None:
        if self.exited.is_set():
            return
        self.stop_requested = True
        await terminate_group(self.pgid, exited=self.exited.wait, grace=grace, kill_group=False)

    async def supervise(
        self, proc: trio.Process, output: AgentLog, record: Path, *, nursery: trio.Nursery, on_exit: OnExit | None
    ) -> None:
        """The one task that waits on the agent; `exited` is set however it ends, then `on_exit` runs.

        Its output pump is a sibling in `nursery` rather than a child: a nursery of its own per run cost
        more than the pump (docs/PERFORMANCE.md). The pump ends when the pipe does, or when this task
        closes the pipe under it.
        """
        current_agent.set(self.name)  # journald's AGENT= field on what is logged about it
        stdout = proc.stdout
        assert isinstance(stdout, trio.lowlevel.FdStream)  # what open_process gives for a pipe on Unix
        drained = trio.Event()
        nursery.start_soon(_pump, stdout, output, drained)
        try:
            await self._watch(proc, drained)
        except Exception:
            # Whatever goes wrong watching one agent must not take the supervisor down with it.
            log.exception("watching %s (pid %d) failed", self.name, self._pid)
        finally:
            with trio.CancelScope(shield=True):
                if proc.returncode is None:
                    # Cancelled (the daemon is going down hard) or failed while the agent still runs:
                    # never leave an orphan behind.
                    signal_group(self.pgid, signal.SIGKILL)
                    with trio.move_on_after(KILL_WAIT):
                        await proc.wait()
                self.returncode = proc.returncode
                # A pump still reading (a straggler kept the pipe open) stops here, before the log closes.
                await trio.aclose_forcefully(stdout)
                with trio.move_on_after(KILL_WAIT):
                    await drained.wait()
                await output.aclose()
                await trio.to_thread.run_sync(_remove_record, record, self._pid)
                self.exited.set()
        if on_exit is not None:
            await on_exit(self)

    async def _watch(self, proc: trio.Process, drained: trio.Event) -> None:
        await proc.wait()
        self.returncode = proc.returncode
        # Nothing in the agent's group may outlive its leader. Stragglers were already told to
        # stop if this is a stop; either way they get a moment to flush (the pipe closes when
        # the last of them exits), then SIGKILL.
        if signal_group(self.pgid, signal.SIGTERM):
            with trio.move_on_after(self.straggler_grace):
                await drained.wait()
            signal_group(self.pgid, signal.SIGKILL)
        with trio.move_on_after(0.5):
            await drained.wait()


async def _pump(stream: trio.lowlevel.FdStream, output: AgentLog, drained: trio.Event) -> None:
    """Copy the agent's output pipe to its log until the pipe ends or `supervise` closes it.

    It parks in `wait_readable` on the pipe and reads it with a non-blocking read(2), rather than inside
    `FdStream.receive_some` (whose frames cost an idle agent 0.8 KiB more). Closing the stream wakes the
    wait with `ClosedResourceError`, as it would wake `receive_some`.
    """
    try:
        while True:
            # Read again each time: once `supervise` closed the stream (while a write was in its thread,
            # say) the number is -1, never a recycled fd of someone else's.
            fd = stream.fileno()
            if fd < 0:
                return
            try:
                await trio.lowlevel.wait_readable(fd)
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                continue
            except (OSError, trio.ClosedResourceError):
                return
            if not data:
                return
            await output.write(data)
    finally:
        drained.set()
        await trio.aclose_forcefully(stream)


# ------------------------------------------------------------------------------------ the backend


class ProcessBackend:
    kind = "process"
    applies_live = False
    units_outlive_daemon = False

    def __init__(
        self,
        *,
        agent_command: str,
        manager_command: str | None,
        log_max_bytes: int,
        operator_pronouns: str,
        log_total_bytes: int | None = None,
        pids_root: Path,
        base_env: Mapping[str, str] | None = None,
        straggler_grace: float = STRAGGLER_GRACE,
    ) -> None:
        self.agent_command = agent_command
        self.manager_command = manager_command
        self.log_max_bytes = log_max_bytes
        # Every agent's log shares one total, as well as its own per-file limit (docs/RELIABILITY.md).
        self.log_budget = LogBudget(log_total_bytes) if log_total_bytes is not None else None
        self.operator_pronouns = operator_pronouns
        self.pids_root = pids_root
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.straggler_grace = straggler_grace

    def check_name(self, name: str) -> None:
        return None

    def starter_files(self, unit: Unit) -> dict[str, str]:
        readme = (
            f"# {unit.name}\n\nConfig repo of hive agent `{unit.name}`. Edit `agent.toml`, commit, and ask for\n"
            "`request_apply_commit`; the operator's approval puts it live.\n"
        )
        return {AGENT_TOML: starter_agent_toml(unit.name), "README.md": readme}

    # ------------------------------------------------------------------ build
    def _render(self, unit: Unit, spec: AgentSpec) -> str:
        template = spec.command
        if template is None:
            template = self.manager_command if unit.is_manager else self.agent_command
        if not template:
            raise LifecycleFailed(f"no command configured for {unit.name}")
        return render_command(template, name=unit.name, socket=unit.socket, state_dir=unit.notes)

    async def build(self, unit: Unit, *, rev: str, ref: str = "main") -> None:
        """Check the config at `rev`: agent.toml must parse, and its command must be valid shell."""
        if unit.applied is None:
            return
        spec = parse_agent_toml(await config_repos.show_file(unit.applied, rev, AGENT_TOML))
        command = self._render(unit, spec)
        # `sh -n` parses without running anything: a syntax error fails the build, not the start.
        result = await trio.run_process(
            [SHELL, "-n", "-c", command], capture_stdout=True, capture_stderr=True, check=False
        )
        if result.returncode != 0:
            detail = result.stderr.decode(errors="replace").strip()[-500:]
            raise LifecycleFailed(f"the agent command is not valid shell: {detail}")

    async def _spec(self, unit: Unit) -> AgentSpec:
        if unit.applied is None:
            return AgentSpec()
        path = unit.applied / AGENT_TOML

        def read() -> str | None:
            try:
                return path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return None

        return parse_agent_toml(await trio.to_thread.run_sync(read))

    async def resolved_command(self, unit: Unit) -> str:
        """What a launch of `unit` would run now: the rendered command and its `[env]` (for `needs_update`)."""
        spec = await self._spec(unit)
        env = "\n".join(f"{k}={v}" for k, v in sorted(spec.env.items()))
        return f"{self._render(unit, spec)}\n{env}"

    # ------------------------------------------------------------------ run
    async def launch(self, unit: Unit, *, nursery: trio.Nursery, on_exit: OnExit | None = None) -> Run:
        spec = await self._spec(unit)
        command = self._render(unit, spec)
        env = agent_environment(unit, spec, operator_pronouns=self.operator_pronouns, base=self.base_env)
        output = await AgentLog.open(unit.log, max_bytes=self.log_max_bytes, budget=self.log_budget)
        # The harness channel: one end for the child (only it and what it passes the fd to can use it),
        # one for the daemon. Both are created close-on-exec; `pass_fds` makes the child's inheritable.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env[HARNESS_FD_ENV] = str(theirs.fileno())
        try:
            proc = await trio.lowlevel.open_process(
                [SHELL, "-c", command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=str(unit.notes),
                env=env,
                start_new_session=True,
                pass_fds=(theirs.fileno(),),
            )
        except OSError as exc:
            ours.close()
            await output.aclose()
            raise LifecycleFailed(f"could not start {unit.name}: {exc.strerror or exc}") from exc
        finally:
            theirs.close()
        run = ProcessRun(name=unit.name, pid=proc.pid, straggler_grace=self.straggler_grace, harness_socket=ours)
        try:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._record, unit, proc.pid, command)
        except BaseException:
            ours.close()
            signal_group(proc.pid, signal.SIGKILL)
            with trio.CancelScope(shield=True):
                await proc.wait()
                await output.aclose()
            raise
        nursery.start_soon(partial(run.supervise, proc, output, unit.pid_record, nursery=nursery, on_exit=on_exit))
        return run

    def _record(self, unit: Unit, pid: int, command: str) -> None:
        record = PidRecord(
            name=unit.name,
            pid=pid,
            pgid=pid,
            boot_id=read_boot_id(),
            start_ticks=read_start_ticks(pid) or 0,
            command=command,
        )
        _write_record(unit.pid_record, record)

    async def adopt(self, unit: Unit, *, nursery: trio.Nursery, on_exit: OnExit | None = None) -> Run | None:
        # A child of a dead daemon cannot be waited on or have its output piped again: it is reaped
        # by `reap_orphans` and started fresh instead.
        return None

    async def reap_orphans(self, *, grace: float) -> list[str]:
        records = await trio.to_thread.run_sync(_load_records, self.pids_root)
        boot = read_boot_id()
        stopped: list[str] = []
        async with trio.open_nursery() as nursery:
            for path, record in records:
                nursery.start_soon(self._reap_one, path, record, boot, grace, stopped)
        # A daemon killed between starting an agent and writing its pid record leaves a process no record
        # names (found by the crash tests): find those by the socket in their environment.
        pid_dir = self.pids_root.parent  # pid records live in the runtime dir, beside the sockets
        unrecorded = await trio.to_thread.run_sync(_unrecorded_agents, pid_dir, os.getpid())
        async with trio.open_nursery() as nursery:
            for pid, name in unrecorded:
                nursery.start_soon(self._reap_unrecorded, pid, name, grace, stopped)
        return sorted(set(stopped))

    async def _reap_unrecorded(self, pid: int, name: str, grace: float, stopped: list[str]) -> None:
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            return
        log.warning("stopping %s (pid %d), left running by a previous daemon without a pid record", name, pid)
        await terminate_group(pgid, exited=partial(_wait_exit, pid, grace=grace), grace=grace, kill_group=True)
        stopped.append(name)

    async def _reap_one(
        self, path: Path, record: PidRecord | None, boot: str, grace: float, stopped: list[str]
    ) -> None:
        try:
            if record is None or record.boot_id != boot:
                return  # unreadable, or from before a reboot: nothing of it can still run
            ticks = read_start_ticks(record.pid)
            if ticks is not None and ticks != record.start_ticks:
                return  # the pid now belongs to an unrelated process
            if ticks is None:
                # The leader is gone; members of its group may linger (they keep its pgid in use).
                if signal_group(record.pgid, signal.SIGKILL):
                    stopped.append(record.name)
                return
            log.warning("stopping %s (pid %d), left running by a previous daemon", record.name, record.pid)
            wait = partial(_wait_exit, record.pid, grace=grace)
            await terminate_group(record.pgid, exited=wait, grace=grace, kill_group=True)
            stopped.append(record.name)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))

    async def remove(self, unit: Unit) -> None:
        return None

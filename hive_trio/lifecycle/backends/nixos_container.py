"""The `nixos-container` backend: hyperhive's model, each agent a NixOS container built from its repo.

Sub-agents are containers `h-<name>`, the manager is `hm1nd`. nixos-container refuses names over 11
characters (they become network interface names), so agent names over 9 characters are refused here
before anything is created. A container is built with `nixos-container create|update <c> --flake
git+file://<applied>?ref=…&rev=<sha>#default`, pinned to the exact approved commit, and the agent's
socket dir, state dir and Claude dir are bind-mounted by writing `EXTRA_NSPAWN_FLAGS` into the
container's `/etc/nixos-containers/<c>.conf`, as hive-c0re's `set_nspawn_flags` does. Containers are
systemd units: they outlive the daemon, and a restarted daemon adopts the ones still up.

The argv lists, the conf edit and the flake text are pure functions (tested exactly); only
`NixosContainerBackend` runs anything. No real NixOS host was available while this was written
(docs/LIFECYCLE.md). It never touches the database or sends a message.
"""

from __future__ import annotations

import logging
import platform
import re
import subprocess
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Final
from urllib.parse import quote

import trio

from hive_trio.errors import InvalidRequest, LifecycleFailed
from hive_trio.lifecycle.backends import OnExit, Run, Unit
from hive_trio.records import MANAGER_AGENT

log = logging.getLogger(__name__)

CONTAINER_PREFIX: Final = "h-"
MANAGER_CONTAINER: Final = "hm1nd"
# nixos-container caps names at 11 characters; `h-` leaves 9 for the agent.
MAX_AGENT_NAME: Final = 9
CONF_DIR: Final = Path("/etc/nixos-containers")
FLAKE_ATTR: Final = "default"
# In-container paths, as hyperhive mounts them.
SOCKET_MOUNT: Final = "/run/hive"
STATE_MOUNT: Final = "/state"
CLAUDE_MOUNT: Final = "/root/.claude"
AGENTS_MOUNT: Final = "/agents"
# How often a running container is checked; nixos-container has no event stream to wait on.
DEFAULT_POLL_INTERVAL: Final = 5.0
_OUTPUT_TAIL: Final = 2000
_SAFE_PATH: Final = re.compile(r"[A-Za-z0-9_./+@-]+")


# ------------------------------------------------------------------------------------ names and argv


def container_name(name: str) -> str:
    if name == MANAGER_AGENT:
        return MANAGER_CONTAINER
    if len(name) > MAX_AGENT_NAME:
        raise InvalidRequest(
            f"agent name {name!r} has {len(name)} characters; the nixos-container backend allows at most "
            f"{MAX_AGENT_NAME} (container h-{name} would pass nixos-container's 11-character limit)"
        )
    return CONTAINER_PREFIX + name


def flake_ref(applied: Path, *, rev: str, ref: str = "main") -> str:
    """A flake reference pinned to `rev` in the applied repo (`ref` names a ref that contains it)."""
    if not applied.is_absolute():
        raise ValueError("the applied repo path must be absolute")
    return f"git+file://{quote(str(applied))}?ref={quote(ref, safe='/')}&rev={rev}#{FLAKE_ATTR}"


def create_argv(executable: str, container: str, flake: str) -> list[str]:
    return [executable, "create", container, "--flake", flake]


def update_argv(executable: str, container: str, flake: str) -> list[str]:
    return [executable, "update", container, "--flake", flake]


def start_argv(executable: str, container: str) -> list[str]:
    return [executable, "start", container]


def stop_argv(executable: str, container: str) -> list[str]:
    return [executable, "stop", container]


def terminate_argv(executable: str, container: str) -> list[str]:
    return [executable, "terminate", container]


def destroy_argv(executable: str, container: str) -> list[str]:
    return [executable, "destroy", container]


def status_argv(executable: str, container: str) -> list[str]:
    return [executable, "status", container]


def bind_mounts(unit: Unit) -> list[tuple[Path, str]]:
    """(host path, container path) pairs: the socket dir, the state dir, the Claude dir (and /agents)."""
    mounts = [(unit.socket_dir, SOCKET_MOUNT), (unit.notes, STATE_MOUNT), (unit.claude, CLAUDE_MOUNT)]
    if unit.agents_dir is not None:
        mounts.append((unit.agents_dir, AGENTS_MOUNT))
    return mounts


def nspawn_flags(mounts: Sequence[tuple[Path, str]]) -> str:
    # The container@ unit expands $EXTRA_NSPAWN_FLAGS unquoted, so a path must not need quoting.
    for host, _ in mounts:
        if _SAFE_PATH.fullmatch(str(host)) is None:
            raise LifecycleFailed(f"cannot bind-mount {host}: the path has characters systemd-nspawn flags can't carry")
    return " ".join(f"--bind={host}:{inside}" for host, inside in mounts)


def with_nspawn_flags(conf_text: str, flags: str) -> str:
    """The container conf with its `EXTRA_NSPAWN_FLAGS` line set to `flags` (replaced or appended)."""
    line = f'EXTRA_NSPAWN_FLAGS="{flags}"'
    lines = conf_text.splitlines()
    out = [line if existing.startswith("EXTRA_NSPAWN_FLAGS=") else existing for existing in lines]
    if line not in out:
        out.append(line)
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------ the flake


def nix_string(value: str) -> str:
    """A Nix double-quoted string literal for `value` (escapes `\\`, `"` and `${`)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def nix_system() -> str:
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return f"{arch}-linux"


def agent_flake(
    name: str,
    *,
    hyperhive_flake: str,
    dashboard_port: int,
    operator_pronouns: str,
    system: str,
) -> str:
    """The `flake.nix` a new agent's config repo starts with.

    As in hive-c0re: `hyperhive_flake` becomes `inputs.hyperhive.url`; the dashboard port is inlined
    so the agent's page can link back to the operator's dashboard; the operator's pronouns reach the
    harness as `HIVE_OPERATOR_PRONOUNS` in its systemd unit's environment.
    """
    container = container_name(name)
    module = "manager" if name == MANAGER_AGENT else "agent"
    return f"""\
{{
  description = {nix_string(f"hive agent {name} (container {container})")};

  inputs.hyperhive.url = {nix_string(hyperhive_flake)};

  outputs = {{ self, hyperhive, ... }}:
    let
      nixpkgs = hyperhive.inputs.nixpkgs;
    in
    {{
      nixosConfigurations.{FLAKE_ATTR} = nixpkgs.lib.nixosSystem {{
        system = {nix_string(system)};
        modules = [
          hyperhive.nixosModules.{module}
          ./agent.nix
          {{
            boot.isContainer = true;
            networking.hostName = {nix_string(container)};
            systemd.services.hive-ag3nt.environment = {{
              HIVE_AGENT = {nix_string(name)};
              HIVE_SOCKET = {nix_string(SOCKET_MOUNT + "/mcp.sock")};
              HIVE_STATE_DIR = {nix_string(STATE_MOUNT)};
              HIVE_DASHBOARD_PORT = {nix_string(str(dashboard_port))};
              HIVE_OPERATOR_PRONOUNS = {nix_string(operator_pronouns)};
              CLAUDE_CONFIG_DIR = {nix_string(CLAUDE_MOUNT)};
            }};
          }}
        ];
      }};
    }};
}}
"""


STARTER_AGENT_NIX: Final = """\
# This agent's own NixOS configuration, imported by flake.nix. The manager edits it here;
# a commit goes live only after the operator approves it.
{ pkgs, ... }:
{
  system.stateVersion = "24.11";
  environment.systemPackages = [ pkgs.git ];
}
"""


# ------------------------------------------------------------------------------------ running commands


async def _run(argv: Sequence[str], *, what: str) -> str:
    try:
        result = await trio.run_process(
            list(argv), capture_stdout=True, capture_stderr=True, check=False, stdin=subprocess.DEVNULL
        )
    except OSError as exc:
        raise LifecycleFailed(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).decode(errors="replace").strip()[-_OUTPUT_TAIL:]
        raise LifecycleFailed(f"{what}: {detail or f'{argv[0]} exited with status {result.returncode}'}")
    return result.stdout.decode(errors="replace").strip()


class ContainerRun:
    """A container that is up; a poller notices when it is not any more."""

    def __init__(self, backend: NixosContainerBackend, container: str) -> None:
        self.backend = backend
        self.container = container
        self.exited = trio.Event()
        self._reason = "is still running"
        self._watch_scope = trio.CancelScope()

    @property
    def pid(self) -> int | None:
        return None

    @property
    def exit_reason(self) -> str:
        return self._reason

    @property
    def exited_cleanly(self) -> bool:
        return False  # a container that stops by itself is never asked to: judge it as a crash

    async def watch(self, *, interval: float, on_exit: OnExit | None = None) -> None:
        """Poll until the container is not up (or `stop` ends this); then `on_exit`, in this task."""
        try:
            with self._watch_scope:
                while True:
                    await trio.sleep(interval)
                    try:
                        state = await self.backend.status(self.container)
                    except LifecycleFailed as exc:
                        log.warning("status of %s unknown: %s", self.container, exc)
                        continue
                    if state != "up":
                        self._reason = f"container {self.container} is {state}"
                        return
        finally:
            self.exited.set()
        if on_exit is not None:
            await on_exit(self)

    async def stop(self, *, grace: float) -> None:
        if self.exited.is_set():
            return
        try:
            with trio.move_on_after(max(0.0, grace)) as scope:
                await _run(stop_argv(self.backend.executable, self.container), what=f"stop {self.container}")
            if scope.cancelled_caught:
                raise LifecycleFailed(f"{self.container} did not stop within {grace:g} s")
        except LifecycleFailed as exc:
            log.warning("%s; terminating it", exc)
            with trio.CancelScope(shield=True):
                await _run(terminate_argv(self.backend.executable, self.container), what=f"terminate {self.container}")
        self._reason = f"container {self.container} was stopped"
        self._watch_scope.cancel()
        self.exited.set()


class NixosContainerBackend:
    kind = "nixos-container"
    applies_live = True
    units_outlive_daemon = True

    def __init__(
        self,
        *,
        hyperhive_flake: str,
        dashboard_port: int,
        operator_pronouns: str,
        executable: str = "nixos-container",
        conf_dir: Path = CONF_DIR,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        system: str | None = None,
    ) -> None:
        self.hyperhive_flake = hyperhive_flake
        self.dashboard_port = dashboard_port
        self.operator_pronouns = operator_pronouns
        self.executable = executable
        self.conf_dir = conf_dir
        self.poll_interval = poll_interval
        self.system = system or nix_system()

    def check_name(self, name: str) -> None:
        container_name(name)

    def starter_files(self, unit: Unit) -> Mapping[str, str]:
        flake = agent_flake(
            unit.name,
            hyperhive_flake=self.hyperhive_flake,
            dashboard_port=self.dashboard_port,
            operator_pronouns=self.operator_pronouns,
            system=self.system,
        )
        readme = (
            f"# {unit.name}\n\nNixOS container `{container_name(unit.name)}`. `flake.nix` wires it to the hive; "
            "edit `agent.nix`, commit, and ask for `request_apply_commit`.\n"
        )
        return {"flake.nix": flake, "agent.nix": STARTER_AGENT_NIX, "README.md": readme}

    async def status(self, container: str) -> str:
        """`up`, `down` or `gone` (nixos-container prints `gone` and fails for an unknown container)."""
        try:
            result = await trio.run_process(
                status_argv(self.executable, container),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise LifecycleFailed(f"cannot run {self.executable}: {exc.strerror or exc}") from exc
        words = result.stdout.decode(errors="replace").split()
        state = words[0] if words else ""
        if state in ("up", "down", "gone"):
            return state
        detail = result.stderr.decode(errors="replace").strip()[-_OUTPUT_TAIL:]
        raise LifecycleFailed(f"status of {container}: {detail or 'no answer from nixos-container'}")

    async def build(self, unit: Unit, *, rev: str, ref: str = "main") -> None:
        if unit.applied is None:
            raise LifecycleFailed("the manager container is declared by the host's NixOS configuration")
        container = container_name(unit.name)
        flake = flake_ref(unit.applied, rev=rev, ref=ref)
        if await self.status(container) == "gone":
            await _run(create_argv(self.executable, container, flake), what=f"create {container}")
        else:
            await _run(update_argv(self.executable, container, flake), what=f"update {container}")
        await self.set_nspawn_flags(unit)

    async def set_nspawn_flags(self, unit: Unit) -> None:
        conf = self.conf_dir / f"{container_name(unit.name)}.conf"
        flags = nspawn_flags(bind_mounts(unit))

        def rewrite() -> None:
            text = conf.read_text() if conf.exists() else ""
            conf.write_text(with_nspawn_flags(text, flags))

        try:
            await trio.to_thread.run_sync(rewrite)
        except OSError as exc:
            raise LifecycleFailed(f"cannot write {conf}: {exc.strerror or exc}") from exc

    async def launch(self, unit: Unit, *, nursery: trio.Nursery, on_exit: OnExit | None = None) -> Run:
        container = container_name(unit.name)
        if unit.is_manager:
            await self.set_nspawn_flags(unit)
        await _run(start_argv(self.executable, container), what=f"start {container}")
        run = ContainerRun(self, container)
        nursery.start_soon(partial(run.watch, interval=self.poll_interval, on_exit=on_exit))
        return run

    async def adopt(self, unit: Unit, *, nursery: trio.Nursery, on_exit: OnExit | None = None) -> Run | None:
        container = container_name(unit.name)
        if await self.status(container) != "up":
            return None
        run = ContainerRun(self, container)
        nursery.start_soon(partial(run.watch, interval=self.poll_interval, on_exit=on_exit))
        return run

    async def reap_orphans(self, *, grace: float) -> list[str]:
        # Containers are systemd's, not orphans: the ones still up are adopted instead.
        return []

    async def remove(self, unit: Unit) -> None:
        container = container_name(unit.name)
        await _run(destroy_argv(self.executable, container), what=f"destroy {container}")

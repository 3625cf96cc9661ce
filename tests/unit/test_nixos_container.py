"""nixos-container command construction (argv lists, conf edit, flake text) and the backend against a
stand-in `nixos-container` script. No real NixOS host was available (docs/LIFECYCLE.md)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio

from hive_trio.errors import InvalidRequest, LifecycleFailed
from hive_trio.lifecycle.backends import Unit
from hive_trio.lifecycle.backends.nixos_container import (
    NixosContainerBackend,
    agent_flake,
    bind_mounts,
    container_name,
    create_argv,
    destroy_argv,
    flake_ref,
    nix_string,
    nspawn_flags,
    start_argv,
    status_argv,
    stop_argv,
    update_argv,
    with_nspawn_flags,
)


def _unit(root: Path, name: str) -> Unit:
    return Unit(
        name=name,
        socket=root / "run/agents" / name / "mcp.sock",
        socket_dir=root / "run/agents" / name,
        notes=root / "state/agents" / name / "state",
        claude=root / "state/agents" / name / "claude",
        log=root / "state/logs" / f"{name}.log",
        pid_record=root / "run/pids" / f"{name}.json",
        applied=root / "state/applied" / name,
    )


def test_container_names() -> None:
    assert container_name("alpha") == "h-alpha"
    assert container_name("ninechars") == "h-ninechars"
    assert container_name("manager") == "hm1nd"
    with pytest.raises(InvalidRequest, match="at most 9"):
        container_name("tenchars-x")


def test_argv_lists() -> None:
    nc = "nixos-container"
    flake = "git+file:///var/lib/hive-trio/applied/alpha?ref=main&rev=" + "a" * 40 + "#default"
    assert create_argv(nc, "h-alpha", flake) == [nc, "create", "h-alpha", "--flake", flake]
    assert update_argv(nc, "h-alpha", flake) == [nc, "update", "h-alpha", "--flake", flake]
    assert start_argv(nc, "h-alpha") == [nc, "start", "h-alpha"]
    assert stop_argv(nc, "h-alpha") == [nc, "stop", "h-alpha"]
    assert destroy_argv(nc, "h-alpha") == [nc, "destroy", "h-alpha"]
    assert status_argv(nc, "hm1nd") == [nc, "status", "hm1nd"]


def test_flake_ref_pins_the_commit() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert (
        flake_ref(Path("/var/lib/hive-trio/applied/alpha"), rev=sha, ref="refs/tags/proposal/7")
        == f"git+file:///var/lib/hive-trio/applied/alpha?ref=refs/tags/proposal/7&rev={sha}#default"
    )
    with pytest.raises(ValueError):
        flake_ref(Path("relative"), rev=sha)


def test_bind_mounts_and_nspawn_flags(tmp_path: Path) -> None:
    unit = _unit(Path("/srv"), "alpha")
    flags = nspawn_flags(bind_mounts(unit))
    assert flags == (
        "--bind=/srv/run/agents/alpha:/run/hive --bind=/srv/state/agents/alpha/state:/state "
        "--bind=/srv/state/agents/alpha/claude:/root/.claude"
    )
    manager = Unit(
        name="manager",
        socket=Path("/srv/run/manager/mcp.sock"),
        socket_dir=Path("/srv/run/manager"),
        notes=Path("/srv/state/manager/state"),
        claude=Path("/srv/state/manager/claude"),
        log=Path("/srv/state/logs/manager.log"),
        pid_record=Path("/srv/run/pids/manager.json"),
        agents_dir=Path("/srv/state/agents"),
    )
    assert "--bind=/srv/state/agents:/agents" in nspawn_flags(bind_mounts(manager))
    with pytest.raises(LifecycleFailed, match="cannot bind-mount"):
        nspawn_flags([(Path("/with space"), "/state")])


def test_conf_edit_replaces_or_appends() -> None:
    conf = 'PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.1.1\nEXTRA_NSPAWN_FLAGS="--old"\nAUTO_START=0\n'
    edited = with_nspawn_flags(conf, "--bind=/a:/b")
    assert edited.splitlines() == [
        "PRIVATE_NETWORK=1",
        "HOST_ADDRESS=10.233.1.1",
        'EXTRA_NSPAWN_FLAGS="--bind=/a:/b"',
        "AUTO_START=0",
    ]
    assert with_nspawn_flags("AUTO_START=0\n", "--x").splitlines() == ["AUTO_START=0", 'EXTRA_NSPAWN_FLAGS="--x"']
    assert with_nspawn_flags("", "--x") == 'EXTRA_NSPAWN_FLAGS="--x"\n'


def test_nix_strings_escape() -> None:
    assert nix_string('she/her "x" ${evil} \\') == '"she/her \\"x\\" \\${evil} \\\\"'


def test_agent_flake_text() -> None:
    text = agent_flake(
        "alpha",
        hyperhive_flake="github:example/hyperhive",
        dashboard_port=7847,
        operator_pronouns='she/her "boss"',
        system="x86_64-linux",
    )
    assert 'inputs.hyperhive.url = "github:example/hyperhive";' in text
    assert "nixosConfigurations.default = nixpkgs.lib.nixosSystem {" in text
    assert "hyperhive.nixosModules.agent" in text
    assert 'networking.hostName = "h-alpha";' in text
    assert 'HIVE_DASHBOARD_PORT = "7847";' in text
    assert 'HIVE_OPERATOR_PRONOUNS = "she/her \\"boss\\"";' in text
    assert 'HIVE_SOCKET = "/run/hive/mcp.sock";' in text
    assert "./agent.nix" in text
    assert text.count("{") == text.count("}")
    assert "hyperhive.nixosModules.manager" in agent_flake(
        "manager", hyperhive_flake="x", dashboard_port=1, operator_pronouns="p", system="aarch64-linux"
    )


# ------------------------------------------------------------------------------ against a stand-in binary

FAKE = """#!/bin/sh
# Stand-in for nixos-container: records argv, keeps container state in files.
echo "$*" >> "$FAKE_LOG"
action="$1"; name="$2"
state="$FAKE_STATE/$name"
case "$action" in
  create) [ -e "$state" ] && { echo "container $name already exists" >&2; exit 1; }
          case "$4" in *fail*) echo "error: build of flake failed" >&2; exit 1;; esac
          echo down > "$state"; printf 'PRIVATE_NETWORK=1\\nAUTO_START=0\\n' > "$FAKE_CONF/$name.conf";;
  update) [ -e "$state" ] || { echo gone; exit 1; };;
  start) echo up > "$state";;
  stop|terminate) echo down > "$state";;
  destroy) rm -f "$state" "$FAKE_CONF/$name.conf";;
  status) [ -e "$state" ] || { echo gone; exit 1; }; cat "$state";;
  *) echo "unknown action $action" >&2; exit 1;;
esac
"""


@pytest.fixture
def fake_nixos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    binary = tmp_path / "nixos-container"
    binary.write_text(FAKE)
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "argv.log"
    state = tmp_path / "containers"
    conf = tmp_path / "conf"
    state.mkdir()
    conf.mkdir()
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_STATE", str(state))
    monkeypatch.setenv("FAKE_CONF", str(conf))
    return binary, log, conf


async def test_backend_runs_the_commands_in_order(tmp_path: Path, fake_nixos: tuple[Path, Path, Path]) -> None:
    binary, log, conf = fake_nixos
    backend = NixosContainerBackend(
        hyperhive_flake="github:example/hyperhive",
        dashboard_port=7847,
        operator_pronouns="she/her",
        executable=str(binary),
        conf_dir=conf,
        poll_interval=0.05,
    )
    unit = _unit(tmp_path, "alpha")
    sha = "1" * 40
    await backend.build(unit, rev=sha)
    conf_text = (conf / "h-alpha.conf").read_text()
    assert f"--bind={unit.socket_dir}:/run/hive" in conf_text and "PRIVATE_NETWORK=1" in conf_text
    async with trio.open_nursery() as nursery:
        run = await backend.launch(unit, nursery=nursery)
        assert await backend.status("h-alpha") == "up"
        adopted = await backend.adopt(unit, nursery=nursery)
        assert adopted is not None
        await backend.build(unit, rev="2" * 40, ref="refs/tags/proposal/3")
        # The container stops behind our back: the poller notices.
        await trio.run_process([str(binary), "stop", "h-alpha"], env={**os.environ, "FAKE_LOG": os.devnull})
        with trio.fail_after(5):
            await adopted.exited.wait()
        assert "down" in adopted.exit_reason
        await run.stop(grace=1)
    await backend.remove(unit)
    assert await backend.status("h-alpha") == "gone"
    calls = log.read_text().splitlines()
    applied = unit.applied
    assert calls[:4] == [
        "status h-alpha",
        f"create h-alpha --flake git+file://{applied}?ref=main&rev={sha}#default",
        "start h-alpha",
        "status h-alpha",
    ]
    assert f"update h-alpha --flake git+file://{applied}?ref=refs/tags/proposal/3&rev={'2' * 40}#default" in calls
    assert calls[-2:] == ["destroy h-alpha", "status h-alpha"]


async def test_a_failed_build_says_why(tmp_path: Path, fake_nixos: tuple[Path, Path, Path]) -> None:
    binary, _, conf = fake_nixos
    backend = NixosContainerBackend(
        hyperhive_flake="x", dashboard_port=1, operator_pronouns="p", executable=str(binary), conf_dir=conf
    )
    unit = _unit(tmp_path / "fail", "alpha")
    with pytest.raises(LifecycleFailed, match="build of flake failed"):
        await backend.build(unit, rev="3" * 40)
    missing = NixosContainerBackend(
        hyperhive_flake="x", dashboard_port=1, operator_pronouns="p", executable=str(tmp_path / "nope"), conf_dir=conf
    )
    with pytest.raises(LifecycleFailed, match="cannot run"):
        await missing.build(unit, rev="3" * 40)

"""The shipped systemd unit, filled in for this installation: `hive-trio install-unit`.

The template is `hive-trio.service` beside this module. ExecStart names the `hive-trio` script of the
Python that runs this (a venv's works as well as a system one). StateDirectory=/RuntimeDirectory= only
accept paths under /var/lib and /run, so other directories must already exist (and be owned right).
It never runs systemctl itself: the operator decides when to reload and enable.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Final

DEFAULT_UNIT_PATH: Final = Path("/etc/systemd/system/hive-trio.service")
STATE_BASE: Final = Path("/var/lib")
RUNTIME_BASE: Final = Path("/run")


class UnitError(Exception):
    pass


def template() -> str:
    return resources.files("hive_trio.service").joinpath("hive-trio.service").read_text(encoding="utf-8")


def executable() -> str:
    """The `hive-trio` beside this interpreter, else `python -m hive_trio`."""
    script = Path(sys.executable).parent / "hive-trio"
    if script.exists():
        return shlex.quote(str(script))
    found = shutil.which("hive-trio")
    if found:
        return shlex.quote(found)
    return f"{shlex.quote(sys.executable)} -m hive_trio"


def _managed_name(path: Path, base: Path, setting: str) -> str:
    try:
        relative = path.relative_to(base)
    except ValueError:
        raise UnitError(f"{setting}= only manages directories under {base}/, not {path}") from None
    if not relative.parts:
        raise UnitError(f"{setting}= needs a directory below {base}/, not {base} itself")
    return str(relative)


def render_unit(
    *,
    state_dir: Path = STATE_BASE / "hive-trio",
    runtime_dir: Path = RUNTIME_BASE / "hive-trio",
    exec_start: str | None = None,
) -> str:
    """The unit text for these directories; refuses directories systemd cannot create for us."""
    state_name = _managed_name(state_dir, STATE_BASE, "StateDirectory")
    runtime_name = _managed_name(runtime_dir, RUNTIME_BASE, "RuntimeDirectory")
    return (
        template()
        .replace("@EXEC@", exec_start or executable())
        .replace("@STATE_DIR@", shlex.quote(str(state_dir)))
        .replace("@RUNTIME_DIR@", shlex.quote(str(runtime_dir)))
        .replace("@STATE_NAME@", state_name)
        .replace("@RUNTIME_NAME@", runtime_name)
    )


def install_unit(path: Path, text: str, *, force: bool = False) -> None:
    if path.exists() and not force and path.read_text(encoding="utf-8") != text:
        raise UnitError(f"{path} exists and differs; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(path)


__all__ = ["DEFAULT_UNIT_PATH", "UnitError", "install_unit", "render_unit", "template"]

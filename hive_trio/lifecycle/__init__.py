"""Where agents run: supervision, operator actions, approvals with git, the bare lifecycle, and the backends.

`Lifecycle` (`lifecycle.approvals`) composes `Supervisor` (`lifecycle.supervisor`), `LifecycleActions`
(`lifecycle.actions`) and the approval flow; it is exported lazily so that importing a light submodule
(`config_repos`, `restart_policy`) does not import the coordinator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hive_trio.lifecycle.approvals import Lifecycle as Lifecycle
    from hive_trio.lifecycle.supervisor import ActionCancelled as ActionCancelled

_LAZY = {"Lifecycle": "hive_trio.lifecycle.approvals", "ActionCancelled": "hive_trio.lifecycle.supervisor"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["ActionCancelled", "Lifecycle"]

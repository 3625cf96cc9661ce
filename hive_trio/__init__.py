"""hive_trio: a host daemon for a hive of AI agents, on trio (a rewrite of hyperhive's hive-c0re).

The public names below load on first use, so importing a light submodule (the pytest plugin
`hive_trio.testing`, the CLI's argument parser) does not pull in the whole daemon.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hive_trio.core.coordinator import Coordinator as Coordinator
    from hive_trio.core.coordinator import open_coordinator as open_coordinator
    from hive_trio.errors import HiveError as HiveError
    from hive_trio.rules.config import Config as Config
    from hive_trio.rules.config import load_config as load_config

__version__ = "0.1.0"

_LAZY = {
    "Config": "hive_trio.rules.config",
    "load_config": "hive_trio.rules.config",
    "Coordinator": "hive_trio.core.coordinator",
    "open_coordinator": "hive_trio.core.coordinator",
    "HiveError": "hive_trio.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hive_trio' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["Config", "Coordinator", "HiveError", "load_config", "open_coordinator"]

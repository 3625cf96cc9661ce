"""hive_trio: a host daemon for a hive of AI agents, on trio (a rewrite of hyperhive's hive-c0re)."""

from __future__ import annotations

from hive_trio.config import Config as Config
from hive_trio.config import load_config as load_config
from hive_trio.coordinator import Coordinator as Coordinator
from hive_trio.coordinator import open_coordinator as open_coordinator
from hive_trio.errors import HiveError as HiveError

__version__ = "0.1.0"

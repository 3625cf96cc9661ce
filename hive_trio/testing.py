"""pytest plugin entry point (`pytest11 = hive_trio.testing`) for users' tests of their agents (SPEC §9).

On the lifecycle branch this module only exists so the entry point in pyproject.toml can load; the
in-process hive, the bound MCP client and the fixtures come with the sockets branch, whose version of
this file supersedes this one. It must never import anything that starts a daemon.
"""

from __future__ import annotations

__all__: list[str] = []

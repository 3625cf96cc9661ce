"""The operator's live dashboard: server, stream protocol, trio-websocket client, and `watch`.

Import the pieces from their modules; this package root stays light so the CLI can import
`hive_trio.dashboard.token` without pulling in the web server.
"""

from __future__ import annotations

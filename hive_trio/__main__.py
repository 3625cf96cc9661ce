"""`python -m hive_trio`: the same as the `hive-trio` command."""

from __future__ import annotations

from hive_trio.cli import main

raise SystemExit(main())

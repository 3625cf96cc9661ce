"""Fuzz the real socket servers for longer than CI does: tests/integration/test_fuzz_sockets.py with many more examples.

The strategies and properties are the test module's own (JSON-RPC/MCP frames on the agent and manager
sockets, request lines on host.sock; garbage, wrong types, huge and deep values). CI runs 60 examples per
property; this runs `--examples` each, with no per-test timeout, and prints Hypothesis' statistics.

Usage: python scripts/fuzz.py [--examples 5000] [--seed N] [pytest args...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="examples per property (CI: 60)")
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed, to replay a run")
    args, rest = parser.parse_known_args()
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "tests" / "integration" / "test_fuzz_sockets.py"),
        "--timeout=0",
        "--hypothesis-show-statistics",
        "-q",
        *rest,
    ]
    if args.seed is not None:
        command.append(f"--hypothesis-seed={args.seed}")
    env = {**os.environ, "HIVE_FUZZ_EXAMPLES": str(args.examples)}
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    raise SystemExit(main())

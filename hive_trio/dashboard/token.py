"""The dashboard's access token and the URL that carries it.

The token is created once, at the daemon's first start, as a 0600 file in `state_dir`, and kept across
restarts so a bookmarked URL keeps working. `dashboard_url` is what `hive-trio dashboard-url` and
`watch` call: it must work without a running event loop and never start anything.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path
from urllib.parse import urlencode

from hive_trio.errors import HiveError
from hive_trio.rules.config import Config
from hive_trio.rules.paths import TOKEN_MODE, HivePaths

log = logging.getLogger(__name__)

TOKEN_BYTES = 32


def ensure_token(path: Path) -> str:
    """Read the token at `path`, creating it (0600, never world-readable even for an instant) if absent."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, TOKEN_MODE)
    except FileExistsError:
        return read_token(path)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(token + "\n")
    return token


def read_token(path: Path) -> str:
    try:
        # Never through a link: a planted `dashboard.token` link must not hand out another file's text.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise HiveError(f"no dashboard token at {path}: start the daemon once to create it") from None
    except OSError as exc:
        raise HiveError(f"cannot read the dashboard token at {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise HiveError(f"the dashboard token at {path} is not a plain file; delete it and restart the daemon")
        text = os.read(fd, 4096).decode("ascii").strip()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            # Someone loosened it; the token is a password, so put it back rather than refuse to run.
            log.warning("dashboard token %s was readable by others; resetting it to 0600", path)
            os.fchmod(fd, TOKEN_MODE)
    except (OSError, UnicodeDecodeError) as exc:
        raise HiveError(f"cannot read the dashboard token at {path}: {exc}") from None
    finally:
        os.close(fd)
    if len(text) < 16:
        raise HiveError(f"the dashboard token at {path} is too short; delete it and restart the daemon")
    return text


def base_url(config: Config) -> str:
    """The running daemon's bound URL if it wrote one, else what the config says it would bind."""
    paths = HivePaths(config.state_dir, config.runtime_dir)
    try:
        written = paths.dashboard_url_file.read_text(encoding="utf-8").strip()
    except OSError:
        written = ""
    if written:
        return written
    return http_url(config.dashboard_host, config.dashboard_port)


def http_url(host: str, port: int) -> str:
    # A wildcard bind is reachable on loopback from this machine, which is where this URL is used.
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def dashboard_url(config: Config) -> str:
    """The operator's dashboard URL with `?token=`, for `hive-trio dashboard-url` and `watch`."""
    paths = HivePaths(config.state_dir, config.runtime_dir)
    token = read_token(paths.dashboard_token)
    return f"{base_url(config)}?{urlencode({'token': token})}"


__all__ = ["base_url", "dashboard_url", "ensure_token", "http_url", "read_token"]

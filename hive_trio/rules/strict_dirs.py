"""Strict modes for the daemon's directories and files: refuse what someone else could have planted.

OpenSSH's `StrictModes` refuses a key file that others could have written; tmux refuses a socket dir that
is not a directory of its own user with no group/other access; systemd's `RuntimeDirectory=` creates the
dir itself, with a fixed mode. The same rules here:

- `state_dir` and `runtime_dir` must be directories owned by the daemon's uid and not writable by group or
  others. The operator may point either at a symbolic link (say `/var/lib/hive-trio -> /srv/hive`), but
  only a link owned by the daemon's user or root: a link a stranger planted in `/tmp` is refused.
- Inside them, nothing is ever created, chmodded or opened through a symbolic link: directories are walked
  with dir fds and `O_NOFOLLOW`, files are opened with `O_NOFOLLOW`, and a link found is refused.
- A directory is chmodded only if this call created it (through its own fd). An existing one with another
  mode is refused, never "fixed": chmodding through a planted link is how root once gave away `/`.

hive-c0re calls `create_dir_all` and `set_permissions` on whatever is there. This module never decides
which paths exist (`rules.paths` does) and never removes anything.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from hive_trio.errors import HiveError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class UnsafePath(HiveError):
    """A path the daemon refuses to use: foreign, writable by others, a link, or of the wrong mode."""


def _uid() -> int:
    return os.geteuid()


def _mode(st: os.stat_result) -> str:
    return oct(stat.S_IMODE(st.st_mode))


def ensure_base_dir(path: Path, mode: int, *, what: str, flag: str) -> None:
    """Create `path` (mode `mode`) or accept an existing one that is safe; refuse anything else.

    `what` ("state dir") and `flag` ("--state-dir") go into the one-line refusal. Its ancestors are the
    operator's business and are created with default modes when missing (`~/.local/state`).
    """
    path = Path(os.path.abspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    created = True
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        created = False
    link = os.lstat(path)
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (_uid(), 0):
        raise UnsafePath(
            f"refusing {what} {path}: it is a symbolic link owned by uid {link.st_uid}, not by uid {_uid()} "
            f"or root; remove it, or pass {flag} a directory of your own"
        )
    try:
        fd = os.open(path, _DIR_FLAGS)
    except NotADirectoryError:
        raise UnsafePath(f"refusing {what} {path}: it is not a directory; remove it or pass another {flag}") from None
    try:
        st = os.fstat(fd)
        _refuse_foreign(st, f"{what} {path}", f"remove it or pass {flag} a directory of your own")
        if created:
            # systemd's RuntimeDirectory=: a dir we just made gets exactly our mode, whatever the umask.
            os.fchmod(fd, mode)
        elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UnsafePath(
                f"refusing {what} {path}: group or others can write it (mode {_mode(st)}); "
                f"run `chmod go-w {path}` or pass another {flag}"
            )
    finally:
        os.close(fd)


def _refuse_foreign(st: os.stat_result, label: str, advice: str) -> None:
    """Refuse a directory another uid owns: the daemon keeps its state only in its own dirs."""
    if st.st_uid != _uid():
        owner = f"it is owned by uid {st.st_uid}, not by this daemon's uid {_uid()}"
        raise UnsafePath(f"refusing {label}: {owner}; {advice}")


def _refuse_link(path: Path) -> UnsafePath:
    return UnsafePath(
        f"refusing {path}: it is a symbolic link or not a directory, and the daemon never follows links "
        "inside its own dirs; remove it"
    )


def ensure_tree(base: Path, parts: Sequence[str], mode: int) -> None:
    """Make `base/parts[0]/parts[1]/...`, each level a real directory of ours with mode `mode`.

    `base` must already have passed `ensure_base_dir`. Each level is made with `mkdir(dir_fd=...)` and
    opened with `O_NOFOLLOW`, so a link planted at any level is refused, not followed; a level this call
    made gets `mode` through its own fd, an existing one must already have it.
    """
    fd = os.open(base, _DIR_FLAGS)
    try:
        here = base
        for part in parts:
            here = here / part
            created = True
            try:
                os.mkdir(part, mode, dir_fd=fd)
            except FileExistsError:
                created = False
            try:
                child = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refuse_link(here) from None
                raise
            os.close(fd)
            fd = child
            st = os.fstat(fd)
            _refuse_foreign(st, str(here), "remove it")
            if created:
                os.fchmod(fd, mode)
            elif stat.S_IMODE(st.st_mode) != mode:
                # Never chmod what we did not make: the operator decides whether the odd mode was meant.
                raise UnsafePath(
                    f"refusing {here}: its mode is {_mode(st)}, the daemon makes it {oct(mode)} and never "
                    f"changes a directory it did not create; run `chmod {mode:o} {here}` or remove it"
                )
    finally:
        os.close(fd)


def refuse_link(path: Path) -> None:
    """Refuse `path` if it is a symbolic link (for paths another program, like git, will open later)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(
            f"refusing {path}: it is a symbolic link, and the daemon never follows links inside its own dirs; remove it"
        )


def open_regular(path: Path, flags: int, mode: int = 0o600) -> int:
    """`os.open` for a file of the daemon's own: never through a link, never a hard link, never another's.

    An existing file must be a regular file with one link, owned by the daemon's uid; if it is looser
    than `mode`, it is tightened through the fd (a file, unlike a dir, is ours to chmod once opened safely).
    """
    try:
        # O_NONBLOCK: a FIFO planted in a file's place must not hang the open (no effect on a regular file).
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(
                f"refusing {path}: it is a symbolic link, and the daemon never follows links inside its own "
                "dirs; remove it"
            ) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1 or st.st_uid != _uid():
            raise UnsafePath(
                f"refusing {path}: it is not a plain file of this daemon's own (a hard link, a device, or "
                f"owned by uid {st.st_uid}); remove it"
            )
        if stat.S_IMODE(st.st_mode) & ~mode:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_replacing(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `path` whole, through a fresh `<path>.tmp` renamed over it: no link is followed, at either name."""
    tmp = path.with_name(path.name + ".tmp")
    # A leftover (or planted) tmp is removed, not opened: unlink never follows a link.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def read_regular(path: Path) -> bytes:
    """The bytes of a plain file of the daemon's own, never read through a link."""
    fd = open_regular(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


__all__ = [
    "UnsafePath",
    "ensure_base_dir",
    "ensure_tree",
    "open_regular",
    "read_regular",
    "refuse_link",
    "write_replacing",
]

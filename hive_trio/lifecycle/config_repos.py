"""Agent config repos in git: the manager-editable proposal repo and the daemon-only applied repo.

hyperhive keeps two repos per agent: `agents/<name>/config` (the manager commits there) and
`applied/<name>` (what containers are built from; only the daemon writes it). An approved proposal
reaches `applied` as a fast-forward of `main`, and every step leaves a tag: `proposal/<id>`,
`deployed/<id>`, `failed/<id>`, and an annotated `denied/<id>` carrying the operator's note.

Every call runs the real `git` CLI with `trio.run_process`, with the environment isolated from the
host's git setup: no system or global config, a fixed identity, no prompts, and repo discovery that
can never climb out of the repo (so `./hive-state` inside a project checkout never touches the
project's repo). This module knows nothing of approvals, agents or tasks; it only runs git.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import trio

from hive_trio.errors import InvalidRequest, LifecycleFailed

GIT_NAME: Final = "hive-trio"
GIT_EMAIL: Final = "hive-trio@localhost"
MAIN: Final = "main"
COMMIT_REF: Final = re.compile(r"[0-9a-f]{7,40}")
# The diff shown to the operator is capped: a proposal that adds a huge file must not fill memory,
# the database row or every dashboard frame that carries it.
DIFF_LIMIT: Final = 256 * 1024
_ERROR_TAIL: Final = 2000
_CHUNK: Final = 65536


class GitError(LifecycleFailed):
    """A git command failed; the message carries git's own words."""


def normalize_commit_ref(ref: object) -> str:
    """A 7-40 character hex commit id, lower-cased; anything else is refused before git sees it."""
    if not isinstance(ref, str):
        raise InvalidRequest(f"commit_ref must be a string, got {type(ref).__name__}")
    value = ref.strip().lower()
    if COMMIT_REF.fullmatch(value) is None:
        raise InvalidRequest(f"commit_ref {ref[:60]!r} is not a commit id: use 7 to 40 hex characters")
    return value


def git_env(repo: Path | None = None, *, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every git call runs in: nothing from the host's git config leaks in."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME=GIT_NAME,
        GIT_AUTHOR_EMAIL=GIT_EMAIL,
        GIT_COMMITTER_NAME=GIT_NAME,
        GIT_COMMITTER_EMAIL=GIT_EMAIL,
        LC_ALL="C",
    )
    if repo is not None:
        # Discovery stops at the repo: a repo whose .git went missing is an error, not its parent's repo.
        env["GIT_CEILING_DIRECTORIES"] = str(repo.parent)
    return env


def _identity() -> list[str]:
    return ["-c", f"user.name={GIT_NAME}", "-c", f"user.email={GIT_EMAIL}", "-c", f"init.defaultBranch={MAIN}"]


def _fail(what: str, result: subprocess.CompletedProcess[bytes]) -> GitError:
    detail = (result.stderr or b"").decode(errors="replace").strip()[-_ERROR_TAIL:]
    return GitError(f"{what}: {detail or f'git exited with status {result.returncode}'}")


async def run_git(
    repo: Path | None, args: Sequence[str], *, what: str, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    command = ["git", *_identity()]
    if repo is not None:
        command += ["-C", str(repo)]
    command += list(args)
    result = await trio.run_process(
        command, capture_stdout=True, capture_stderr=True, check=False, env=git_env(repo), stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise _fail(what, result)
    return result


def _text(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode(errors="replace").strip()


# ------------------------------------------------------------------------------ creating repos


def _write_files(root: Path, files: Mapping[str, str]) -> None:
    for rel, content in files.items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ValueError(f"starter file {rel!r} escapes the repo")
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")


async def init_config_repo(path: Path, files: Mapping[str, str], *, message: str) -> str:
    """Create `path` as a git repo on `main` with one commit holding `files`; return that commit.

    Built beside `path` and renamed into place, so a daemon killed half-way never leaves a repo without
    its first commit (which `is_repo` would take for a finished one); the next attempt starts over.
    """
    partial = await _start_partial(path)
    await run_git(None, ["init", "--quiet", str(partial)], what=f"could not create config repo {path}")
    await trio.to_thread.run_sync(_write_files, partial, files)
    await run_git(partial, ["add", "--all"], what="could not stage the starter config")
    await run_git(
        partial, ["commit", "--quiet", "--no-verify", "-m", message], what="could not commit the starter config"
    )
    await trio.to_thread.run_sync(os.rename, partial, path)
    return await rev_parse(path, MAIN)


async def init_applied_repo(path: Path, *, source: Path) -> str:
    """Clone the config repo's `main` into the applied repo (remote `config`); return the deployed commit.

    Cloned beside `path` and renamed into place, as `init_config_repo` is built.
    """
    partial = await _start_partial(path)
    await run_git(
        None,
        ["clone", "--quiet", "--origin", "config", "--branch", MAIN, str(source), str(partial)],
        what=f"could not create applied repo {path}",
    )
    await trio.to_thread.run_sync(os.rename, partial, path)
    return await rev_parse(path, MAIN)


async def _start_partial(path: Path) -> Path:
    """A fresh sibling directory to build `path` in; whatever an interrupted attempt left there goes."""
    partial = path.with_name(f".{path.name}.partial")
    await trio.to_thread.run_sync(lambda: shutil.rmtree(partial, ignore_errors=True))
    return partial


def is_repo(path: Path) -> bool:
    return (path / ".git").exists()


# ------------------------------------------------------------------------------ reading


async def rev_parse(repo: Path, ref: str) -> str:
    result = await run_git(
        repo, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], what="", check=False
    )
    if result.returncode != 0:
        raise GitError(f"{ref!r} is not a commit in {repo}")
    return _text(result)


async def show_file(repo: Path, rev: str, rel: str) -> str | None:
    """The text of `rel` at `rev`, or None when that revision has no such file."""
    result = await run_git(repo, ["cat-file", "-e", f"{rev}:{rel}"], what="", check=False)
    if result.returncode != 0:
        return None
    shown = await run_git(repo, ["cat-file", "blob", f"{rev}:{rel}"], what=f"could not read {rel} at {rev[:12]}")
    return shown.stdout.decode("utf-8", errors="replace")


async def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    result = await run_git(repo, ["merge-base", "--is-ancestor", ancestor, descendant], what="", check=False)
    if result.returncode not in (0, 1):
        raise _fail(f"could not compare {ancestor[:12]} with {descendant[:12]}", result)
    return result.returncode == 0


async def diff(repo: Path, base: str, target: str, *, limit: int = DIFF_LIMIT) -> str:
    """`git diff base target`, cut at `limit` bytes with a note saying so (read as a stream, never whole)."""
    command = ["git", *_identity(), "-C", str(repo), "diff", "--no-color", "--no-ext-diff", base, target, "--"]
    chunks: list[bytes] = []
    size = 0
    truncated = False
    proc = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=git_env(repo)
    )
    assert proc.stdout is not None
    read_all = False
    try:
        while True:
            data = await proc.stdout.receive_some(_CHUNK)
            if not data:
                read_all = True
                break
            if size + len(data) > limit:
                chunks.append(bytes(data[: limit - size]))
                truncated = True
                break
            chunks.append(bytes(data))
            size += len(data)
    finally:
        with trio.CancelScope(shield=True):
            if not read_all and proc.returncode is None:
                proc.kill()  # cut off (or cancelled): never leave git behind
            await proc.wait()
            await proc.stdout.aclose()
    if not truncated and proc.returncode != 0:
        raise GitError(f"could not diff {base[:12]}..{target[:12]} in {repo} (git exited {proc.returncode})")
    text = b"".join(chunks).decode("utf-8", errors="replace")
    if truncated:
        text += f"\n[diff truncated at {limit} bytes; see the proposal tag in the applied repo]\n"
    return text


async def tag_message(repo: Path, tag: str) -> str | None:
    result = await run_git(repo, ["tag", "--list", "--format=%(contents)", tag], what="", check=False)
    return _text(result) if result.returncode == 0 and result.stdout else None


# ------------------------------------------------------------------------------ changing the applied repo


async def fetch_commit(repo: Path, *, source: Path, commit_ref: str) -> str:
    """Fetch `commit_ref` (a full or short id in `source`) into `repo`; return the full id."""
    full = await rev_parse(source, commit_ref)
    await run_git(
        repo,
        # Allow a commit no branch points at: the manager may propose a detached commit.
        ["-c", "uploadpack.allowAnySHA1InWant=true", "fetch", "--quiet", "--no-tags", str(source), full],
        what=f"could not fetch {commit_ref} from {source}",
    )
    return full


async def tag(repo: Path, name: str, commit: str, *, message: str | None = None) -> None:
    """Point tag `name` at `commit` (annotated when `message` is given). Re-tagging is idempotent."""
    args = ["tag", "--force"]
    if message is not None:
        args += ["--annotate", "--message", message or "(no note)"]
    await run_git(repo, [*args, name, commit], what=f"could not tag {commit[:12]} as {name}")


async def fast_forward(repo: Path, commit: str) -> None:
    """Move the checked-out `main` (and its work tree) to `commit`; only a fast-forward is allowed."""
    await run_git(repo, ["checkout", "--quiet", MAIN], what=f"could not check out {MAIN}")
    await run_git(repo, ["merge", "--quiet", "--ff-only", commit], what=f"could not fast-forward {MAIN}")

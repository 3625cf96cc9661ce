"""The git layer with the real git CLI, isolated from the host's git config."""

from __future__ import annotations

from pathlib import Path

import pytest

from hive_trio.errors import InvalidRequest
from hive_trio.lifecycle import config_repos
from hive_trio.lifecycle.config_repos import GitError, normalize_commit_ref, run_git


async def commit(repo: Path, rel: str, text: str, message: str) -> str:
    (repo / rel).write_text(text)
    await run_git(repo, ["add", "--all"], what="add")
    await run_git(repo, ["commit", "--quiet", "-m", message], what="commit")
    return await config_repos.rev_parse(repo, "HEAD")


async def test_init_fetch_tag_diff_fast_forward(tmp_path: Path) -> None:
    config = tmp_path / "config"
    applied = tmp_path / "applied"
    first = await config_repos.init_config_repo(config, {"agent.toml": "[env]\n"}, message="starter")
    assert await config_repos.init_applied_repo(applied, source=config) == first
    assert (applied / "agent.toml").read_text() == "[env]\n"

    second = await commit(config, "agent.toml", '[env]\nGREETING = "hej"\n', "greet")
    fetched = await config_repos.fetch_commit(applied, source=config, commit_ref=second[:9])
    assert fetched == second
    await config_repos.tag(applied, "proposal/1", fetched)
    text = await config_repos.diff(applied, "main", fetched)
    assert '+GREETING = "hej"' in text
    assert await config_repos.show_file(applied, fetched, "agent.toml") == '[env]\nGREETING = "hej"\n'
    assert await config_repos.show_file(applied, fetched, "missing.toml") is None
    assert await config_repos.is_ancestor(applied, first, fetched)
    assert not await config_repos.is_ancestor(applied, fetched, first)

    await config_repos.fast_forward(applied, fetched)
    assert await config_repos.rev_parse(applied, "main") == second
    assert (applied / "agent.toml").read_text() == '[env]\nGREETING = "hej"\n'

    await config_repos.tag(applied, "denied/2", first, message="not today")
    assert await config_repos.tag_message(applied, "denied/2") == "not today"
    kind = await run_git(applied, ["cat-file", "-t", "denied/2"], what="cat-file")
    assert kind.stdout.strip() == b"tag"


async def test_a_detached_commit_can_be_fetched(tmp_path: Path) -> None:
    config = tmp_path / "config"
    applied = tmp_path / "applied"
    await config_repos.init_config_repo(config, {"a": "1\n"}, message="starter")
    await config_repos.init_applied_repo(applied, source=config)
    await run_git(config, ["checkout", "--quiet", "--detach"], what="detach")
    loose = await commit(config, "a", "2\n", "detached")
    await run_git(config, ["checkout", "--quiet", "main"], what="back")
    assert await config_repos.fetch_commit(applied, source=config, commit_ref=loose) == loose


async def test_unknown_commit_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "config"
    applied = tmp_path / "applied"
    await config_repos.init_config_repo(config, {"a": "1\n"}, message="starter")
    await config_repos.init_applied_repo(applied, source=config)
    with pytest.raises(GitError, match="is not a commit"):
        await config_repos.fetch_commit(applied, source=config, commit_ref="deadbeef")


async def test_big_diffs_are_cut(tmp_path: Path) -> None:
    config = tmp_path / "config"
    applied = tmp_path / "applied"
    await config_repos.init_config_repo(config, {"a": "1\n"}, message="starter")
    await config_repos.init_applied_repo(applied, source=config)
    big = await commit(config, "big", "line\n" * 100_000, "big")
    await config_repos.fetch_commit(applied, source=config, commit_ref=big)
    text = await config_repos.diff(applied, "main", big, limit=10_000)
    assert len(text) < 10_200
    assert "[diff truncated at 10000 bytes" in text


async def test_discovery_never_climbs_to_a_parent_repo(tmp_path: Path) -> None:
    """A repo whose .git is gone must not silently become the enclosing project's repo."""
    outer = tmp_path / "project"
    await config_repos.init_config_repo(outer, {"x": "1\n"}, message="project")
    inner = outer / "hive-state" / "applied" / "alpha"
    inner.mkdir(parents=True)
    with pytest.raises(GitError):
        await config_repos.rev_parse(inner, "main")
    result = await run_git(inner, ["status"], what="status", check=False)
    assert result.returncode != 0


async def test_host_git_config_does_not_leak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home_config = tmp_path / "gitconfig"
    home_config.write_text("[user]\n\tname = Host Person\n[commit]\n\tgpgsign = true\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home_config))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    repo = tmp_path / "repo"
    await config_repos.init_config_repo(repo, {"a": "1\n"}, message="starter")
    author = await run_git(repo, ["log", "-1", "--format=%an <%ae>"], what="log")
    assert author.stdout.decode().strip() == "hive-trio <hive-trio@localhost>"


@pytest.mark.parametrize("ref", ["abc12", "g" * 10, "a" * 41, "", "HEAD", "main", "abc1234; rm -rf /", 1234567])
def test_commit_refs_are_hex_7_to_40(ref: object) -> None:
    with pytest.raises(InvalidRequest):
        normalize_commit_ref(ref)


def test_commit_refs_are_normalized() -> None:
    assert normalize_commit_ref(" ABCDEF1 ") == "abcdef1"
    assert normalize_commit_ref("a" * 40) == "a" * 40

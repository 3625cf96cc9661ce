"""The agent side of a hive: `hive-trio agent`, the harness that runs an agent CLI in a turn loop.

`loop` is the turn loop, `prompt` the wake prompt, `runtimes/` the CLIs it can drive (Claude Code through
claude-agent-sdk, or any command per turn), `channel` the harness's report channel to the daemon, and
`scripted_model` a Messages API stand-in for offline tests. Nothing here imports the daemon.
"""

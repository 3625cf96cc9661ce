"""The bundled example agents and manager, as real MCP clients of real sockets, in an in-process hive."""

from __future__ import annotations

from pathlib import Path

import pytest
from lifecycle_support import eventually, lifecycle_config

from hive_trio.daemon import open_hive
from hive_trio.examples.up import example_agent_command, example_manager_command
from hive_trio.records import Approval, ApprovalKind, ApprovalStatus


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_example_agents_talk_ask_and_propose(short_tmp: Path) -> None:
    config = lifecycle_config(
        short_tmp, agent_command=example_agent_command(), manager_command=example_manager_command()
    )
    async with open_hive(config) as hive:
        coord = hive.coordinator
        await coord.ops.spawn("alice")
        await coord.ops.spawn("bob")

        async def bodies() -> list[tuple[str, str, str]]:
            return [(m.sender, m.recipient, m.body) for m in await coord.recent_messages(None, limit=500)]

        async def greeted_both_ways() -> bool:
            seen = await bodies()
            return any(s == "alice" and r == "bob" for s, r, _ in seen) and any(
                s == "bob" and r == "alice" and b.startswith("re: ") for s, r, b in seen
            )

        await eventually(greeted_both_ways, coord=coord, within=15, what="alice and bob to talk")
        # alice (first by name) asked the operator, with a deadline and a default.
        questions = await eventually(coord.list_questions, coord=coord, within=10, what="alice's question")
        question = questions[0]
        assert question.asker == "alice" and question.target is None and question.deadline_at is not None

        # The manager committed to alice's config repo and asked for it to be applied.
        async def fetched_proposals() -> list[Approval]:
            # The row exists (pending) a moment before its commit is fetched and its diff stored.
            return [a for a in await coord.list_approvals(status=ApprovalStatus.PENDING) if a.fetched_sha]

        proposal = (await eventually(fetched_proposals, coord=coord, within=10, what="the proposal"))[0]
        assert proposal.kind is ApprovalKind.APPLY_COMMIT and proposal.agent == "alice"
        assert proposal.requested_by == "manager"
        assert proposal.diff is not None and "EXAMPLE_GREETING" in proposal.diff
        assert all(r.status_text for r in await coord.agent_statuses())
        # Approving rebuilds alice onto the new greeting; answering reaches her as a HelperEvent.
        assert (await coord.ops.approve(proposal.id)).status is ApprovalStatus.APPROVED
        await coord.answer_question(question.id, "the docs", answerer="operator")

        async def greets_in_swedish() -> bool:
            return any(s == "alice" and b.startswith("hej from alice") for s, _, b in await bodies())

        await eventually(greets_in_swedish, coord=coord, within=15, what="alice's new greeting")

        async def working_on_the_answer() -> bool:
            rows = await coord.agent_statuses(["alice"])
            return bool(rows) and rows[0].status_text == "working on the docs"

        await eventually(working_on_the_answer, coord=coord, within=15, what="alice to read the answer")

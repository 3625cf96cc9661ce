"""Token and cost usage per agent per UTC day (table `usage_daily`), and daily budgets (table `budgets`).

`record_turn_tx` adds one finished turn; totals are sums over the days kept. A budget is an agent's
row in `budgets` (either limit may be null); where an agent has none, the configured defaults apply,
which the caller passes in. `budget_notified` remembers, per agent and day, that the manager was told
the budget ran out, so it is told once a day however many turns end past it. Functions of a plain APSW
connection; no sockets, no tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

import apsw

from hive_trio.records.harness import AgentUsage, Budget

# The running total is kept as one more row per agent, so reading usage never sums over the days.
TOTAL_DAY: Final = "total"


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def next_utc_midnight(ts: float) -> float:
    day = datetime.fromtimestamp(ts, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp() + 86400.0


def record_turn_tx(conn: apsw.Connection, *, agent: str, now: float, tokens: int, cost_usd: float) -> None:
    """Add a turn to today's row and to the running total (the row whose day is `TOTAL_DAY`)."""
    for day in (utc_day(now), TOTAL_DAY):
        conn.execute(
            "INSERT INTO usage_daily (agent, day, tokens, cost_usd, turns) VALUES (?, ?, ?, ?, 1)"
            " ON CONFLICT (agent, day) DO UPDATE SET tokens = tokens + excluded.tokens,"
            " cost_usd = cost_usd + excluded.cost_usd, turns = turns + 1",
            (agent, day, tokens, cost_usd),
        )


def budget_tx(conn: apsw.Connection, *, agent: str) -> Budget | None:
    row = conn.execute("SELECT agent, daily_tokens, daily_usd FROM budgets WHERE agent = ?", (agent,)).fetchone()
    return None if row is None else Budget(agent=row[0], daily_tokens=row[1], daily_usd=row[2])


def set_budget_tx(conn: apsw.Connection, *, agent: str, daily_tokens: int | None, daily_usd: float | None) -> Budget:
    conn.execute(
        "INSERT INTO budgets (agent, daily_tokens, daily_usd) VALUES (?, ?, ?)"
        " ON CONFLICT (agent) DO UPDATE SET daily_tokens = excluded.daily_tokens, daily_usd = excluded.daily_usd",
        (agent, daily_tokens, daily_usd),
    )
    return Budget(agent=agent, daily_tokens=daily_tokens, daily_usd=daily_usd)


def usage_tx(
    conn: apsw.Connection,
    names: Sequence[str] | None,
    *,
    now: float,
    default_tokens: int | None,
    default_usd: float | None,
) -> dict[str, AgentUsage]:
    """Each agent's usage today and in all, with the limits that apply to it today."""
    today = utc_day(now)
    args: tuple[str, ...] = ()
    where = ""
    if names is not None:
        where, args = f"WHERE agent IN ({', '.join('?' * len(names)) or 'NULL'})", tuple(names)
    sums: dict[str, list[float]] = {}
    day_filter = ("AND" if where else "WHERE") + " day IN (?, ?)"
    for agent, day, tokens, cost, turns in conn.execute(
        f"SELECT agent, day, tokens, cost_usd, turns FROM usage_daily {where} {day_filter}", (*args, today, TOTAL_DAY)
    ):
        acc = sums.setdefault(agent, [0, 0.0, 0, 0.0, 0])
        if day == today:
            acc[0], acc[1] = tokens, cost
        else:
            acc[2], acc[3], acc[4] = tokens, cost, turns
    budgets = {
        r[0]: (r[1], r[2]) for r in conn.execute(f"SELECT agent, daily_tokens, daily_usd FROM budgets {where}", args)
    }
    out: dict[str, AgentUsage] = {}
    for agent in set(sums) | set(budgets) | set(names or ()):
        acc = sums.get(agent, [0, 0.0, 0, 0.0, 0])
        limits = budgets.get(agent, (default_tokens, default_usd))
        out[agent] = AgentUsage(
            today_tokens=int(acc[0]),
            today_cost_usd=float(acc[1]),
            total_tokens=int(acc[2]),
            total_cost_usd=float(acc[3]),
            turns=int(acc[4]),
            daily_tokens_limit=limits[0],
            daily_usd_limit=limits[1],
        )
    return out


def claim_budget_notice_tx(conn: apsw.Connection, *, agent: str, now: float) -> bool:
    """True once per agent and UTC day: the caller is the one to tell the manager the budget ran out."""
    conn.execute(
        "INSERT INTO usage_daily (agent, day) VALUES (?, ?) ON CONFLICT (agent, day) DO NOTHING", (agent, utc_day(now))
    )
    conn.execute(
        "UPDATE usage_daily SET budget_notified = 1 WHERE agent = ? AND day = ? AND budget_notified = 0",
        (agent, utc_day(now)),
    )
    return conn.changes() == 1


def forget_agent_tx(conn: apsw.Connection, *, agent: str) -> None:
    conn.execute("DELETE FROM budgets WHERE agent = ?", (agent,))


__all__ = [
    "budget_tx",
    "claim_budget_notice_tx",
    "forget_agent_tx",
    "next_utc_midnight",
    "record_turn_tx",
    "set_budget_tx",
    "usage_tx",
    "utc_day",
]

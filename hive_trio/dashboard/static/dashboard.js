// The hive dashboard page: one websocket (/stream) for state and actions. docs/DASHBOARD.md has the protocol.
// Every piece of hive data reaches the DOM as text (textContent / createTextNode), never as HTML.
"use strict";

(() => {
  const LOG_LIMIT = 500;
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- state (applied idempotently, by id)
  const state = {
    epoch: null,
    seq: null,
    agents: new Map(),      // name -> agent_status row
    transients: new Map(),  // name -> transient kind
    approvals: new Map(),   // id -> approval
    questions: new Map(),   // id -> question
    permissions: new Map(), // id -> open permission request (the harness channel, issue 10)
    history: [],            // resolved approvals/questions/permissions seen since the page opened, newest first
    turns: new Map(),       // agent -> [{turn_id, at, events: [...], finished}] (newest last, bounded)
    log: [],                // {from, to, body, at, delivered}
    tombstones: [],
  };

  // The token arrives once in the URL; the server has set a session cookie, so drop it from the address bar.
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }

  // ---------------------------------------------------------------- DOM building, text only
  // Agent-supplied text may carry bidi overrides (U+202E makes what follows read backwards) or other
  // invisible controls. Each is shown as a visible ⟪U+XXXX⟫ (newline and tab excepted), and every text
  // element gets dir="auto", which isolates it (unicode-bidi: isolate) from the text around it.
  const INVISIBLE = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u061C\u200B-\u200F\u2028-\u202E\u2060-\u2069\uFEFF]/g;
  const visible = (text) =>
    String(text).replace(INVISIBLE, (c) => `⟪U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}⟫`);

  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") {
        el.textContent = visible(value);
        el.dir = "auto";
      }
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key in el && typeof value !== "string") el[key] = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(visible(child)));
    }
    return el;
  }

  const clock = (ts) => new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

  function toast(text, ok) {
    const el = h("div", { class: ok ? "toast ok" : "toast", text });
    $("toasts").append(el);
    setTimeout(() => el.remove(), ok ? 2500 : 7000);
  }

  // ---------------------------------------------------------------- the socket
  let ws = null;
  let backoff = 500;
  const stats = { snapshots: 0, resumes: 0 };
  let nextReq = 1;
  const pending = new Map(); // req -> {resolve, reject}

  function streamUrl() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams();
    if (state.epoch !== null && state.seq !== null) {
      query.set("since", String(state.seq));
      query.set("epoch", state.epoch);
    }
    const q = query.toString();
    return `${proto}//${location.host}/stream${q ? "?" + q : ""}`;
  }

  function setConn(kind, text) {
    $("conn").dataset.state = kind;
    $("conn-text").textContent = text;
  }

  // Honest state: "connecting" until the first snapshot (no "Nothing needs you" before we know),
  // "stale" once the stream is lost (cards say "unknown", actions are off) until a snapshot or a
  // resume has brought the page back in sync.
  let everSynced = false;
  const isLive = () => document.body.dataset.sync === "live";
  function setSync(kind) {
    if (document.body.dataset.sync === kind) return;
    document.body.dataset.sync = kind;
    if (kind === "live") everSynced = true;
    renderAll();
    setOffline(kind !== "live");
  }

  function setOffline(offline) {
    for (const b of document.querySelectorAll("main button, #agent-view button")) {
      if (offline && !b.disabled) {
        b.disabled = true;
        b.dataset.offline = "1";
      } else if (!offline && b.dataset.offline) {
        delete b.dataset.offline;
        b.disabled = false;
      }
    }
    if (!offline) renderAgents(); // their own rules (running, transient) decide again
  }

  function connect() {
    const sock = new WebSocket(streamUrl());
    ws = sock;
    let synced = false;
    sock.addEventListener("message", (msg) => {
      let frame;
      try {
        frame = JSON.parse(msg.data);
      } catch (err) {
        return;
      }
      if (frame.type === "snapshot") {
        stats.snapshots++;
        load(frame);
        synced = true;
        backoff = 500;
        setConn("live", "live");
        setSync("live");
      } else if (frame.type === "resumed") {
        stats.resumes++;
        synced = true;
        backoff = 500;
        state.seq = frame.seq;
        setConn("live", "live");
        setSync("live");
      } else if (frame.type === "event") {
        const ev = frame.event;
        // SPEC: drop anything at or below the snapshot's seq.
        if (state.seq !== null && ev.seq <= state.seq) return;
        state.seq = ev.seq;
        apply(ev);
      } else if (frame.type === "result") {
        const waiter = pending.get(frame.req);
        if (waiter) {
          pending.delete(frame.req);
          if (frame.ok) waiter.resolve(frame.result);
          else waiter.reject(new Error(frame.error || "failed"));
        }
      }
    });
    sock.addEventListener("close", (ev) => {
      ws = null;
      for (const waiter of pending.values()) waiter.reject(new Error("connection lost before the hive answered"));
      pending.clear();
      if (!synced && ev.code === 1006 && backoff >= 4000) {
        setConn("refused", "cannot connect — reopen the URL from `hive-trio dashboard-url`");
      } else {
        // 1001 is the daemon going away: stopping or restarting, the page cannot tell which.
        setConn("reconnecting", ev.code === 1001 ? "daemon went away — reconnecting…" : "reconnecting…");
      }
      if (everSynced) setSync("stale");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 5000);
    });
  }

  function act(op, fields) {
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== WebSocket.OPEN || !isLive()) {
        reject(new Error("not connected to the hive; wait until the page says live"));
        return;
      }
      const req = nextReq++;
      pending.set(req, { resolve, reject });
      ws.send(JSON.stringify({ op, req, ...fields }));
    });
  }

  // Disable a button while its action is in flight; show a refusal as a toast.
  async function run(button, op, fields, okText) {
    button.disabled = true;
    try {
      const result = await act(op, fields);
      if (okText) toast(okText, true);
      return result;
    } catch (err) {
      toast(err.message);
      return undefined;
    } finally {
      button.disabled = !isLive();
    }
  }

  // ---------------------------------------------------------------- applying frames
  function load(snap) {
    state.epoch = snap.epoch;
    state.seq = snap.seq;
    state.agents = new Map(snap.agents.map((a) => [a.name, a]));
    state.transients = new Map(snap.agents.filter((a) => a.transient).map((a) => [a.name, a.transient]));
    state.approvals = new Map(
      snap.approvals.map((a) => [a.id, {
        id: a.id, agent: a.agent, approval_kind: a.kind,
        sha_short: a.fetched_sha ? a.fetched_sha.slice(0, 12) : null,
        description: a.description, diff: a.diff, requested_at: a.requested_at,
      }]),
    );
    state.questions = new Map(snap.questions.filter((q) => q.target === null).map((q) => [q.id, q]));
    // A snapshot is bounded (issue 13): what it left out is counted, and listed by the CLI.
    const omitted = snap.omitted || {};
    const more = Object.entries(omitted).map(([part, n]) => `${n} more ${part}`);
    $("attention-omitted").textContent = more.length
      ? `${more.join(" and ")} than fit here: see \`hive-trio approvals\` / \`hive-trio questions\`.`
      : "";
    $("attention-omitted").hidden = more.length === 0;
    state.log = snap.messages.map((m) => ({ id: m.id, from: m.from, to: m.to, body: m.body, at: m.sent_at, delivered: m.delivered_at !== null }));
    state.tombstones = snap.tombstones || [];
    state.permissions = new Map((snap.permissions || []).filter((r) => !r.decision).map((r) => [r.id, r]));
    applyFederation(snap);
    renderAll();
  }

  // Federation (docs/FEDERATION.md): remote agents and the link-state line. The link is not an event
  // stream of its own, so while one exists the page re-reads it from /api/state every few seconds.
  let federationTimer = null;
  function applyFederation(snap) {
    state.remote = snap.remote_agents || [];
    state.link = snap.link || null;
    if (state.link && federationTimer === null) {
      federationTimer = setInterval(async () => {
        try {
          const r = await fetch("/api/state", { credentials: "same-origin" });
          if (r.ok) { applyFederation(await r.json()); renderFederation(); }
        } catch (_) { /* the stream's reconnect handles a daemon that went away */ }
      }, 5000);
    }
  }

  function renderFederation() {
    const el = $("federation");
    if (!el) return;
    const link = state.link;
    el.hidden = !link;
    if (!link) return;
    const now = Date.now() / 1000;
    const ago = (t) => `${Math.max(0, Math.round(now - t))}s ago`;
    const parts = [`Link ${link.hive}: ${link.connected ? "connected" : "DISCONNECTED"}`, `outbox ${link.outbox_depth}`];
    if (link.oldest_unforwarded_at) parts.push(`oldest unforwarded ${ago(link.oldest_unforwarded_at)}`);
    parts.push(link.last_contact_at ? `last contact ${ago(link.last_contact_at)}` : "no contact yet");
    if (link.error) parts.push(`error: ${link.error}`);
    const remote = (state.remote || []).map((a) => `${a.name}@${a.hive}${a.running ? "" : " (stopped)"}`);
    el.textContent = parts.join(" · ") + (remote.length ? ` — remote agents: ${remote.join(", ")}` : "");
  }

  // By the message id both carry; by content only for events from a daemon without ids.
  function sameMessage(e, ev, withTime) {
    if (ev.id != null && e.id != null) return e.id === ev.id;
    return e.from === ev.from && e.to === ev.to && e.body === ev.body && (!withTime || e.at === ev.at);
  }

  function apply(ev) {
    switch (ev.kind) {
      case "sent": {
        const dup = state.log.some((e) => sameMessage(e, ev, true));
        if (!dup) {
          state.log.push({ id: ev.id, from: ev.from, to: ev.to, body: ev.body, at: ev.at, delivered: false });
          if (state.log.length > LOG_LIMIT) state.log.splice(0, state.log.length - LOG_LIMIT);
        }
        renderLog();
        break;
      }
      case "delivered": {
        for (let i = state.log.length - 1; i >= 0; i--) {
          const e = state.log[i];
          if (!e.delivered && sameMessage(e, ev, false)) {
            e.delivered = true;
            break;
          }
        }
        renderLog();
        break;
      }
      case "approval_added":
        // The event carries no request time: it is new, so now is when it started waiting.
        state.approvals.set(ev.id, { requested_at: Date.now() / 1000, ...ev });
        renderAttention();
        break;
      case "approval_resolved":
        state.approvals.delete(ev.id);
        remember("approval", ev.id, ev.agent, `${ev.status}${ev.note ? ` — “${ev.note}”` : ""}`, "operator", ev.resolved_at);
        renderAttention();
        break;
      case "question_added":
        state.questions.set(ev.id, ev);
        renderAttention();
        break;
      case "question_resolved": {
        const q = state.questions.get(ev.id);
        state.questions.delete(ev.id);
        remember("question", ev.id, q ? q.asker : null, ev.cancelled ? "cancelled" : `answered “${ev.answer}”`, ev.answerer, ev.answered_at);
        renderAttention();
        break;
      }
      case "permission_added":
        state.permissions.set(ev.id, ev);
        renderAttention();
        break;
      case "permission_resolved":
        state.permissions.delete(ev.id);
        remember("permission", ev.id, ev.agent, `${ev.decision}${ev.always ? " (always, for this tool)" : ""} · ${ev.tool}`, ev.decided_by, ev.decided_at);
        renderAttention();
        break;
      case "turn_started":
        turnsOf(ev.agent).push({ turn_id: ev.turn_id, at: ev.at, events: [], finished: null });
        trimTurns(ev.agent);
        if (view.name === ev.agent) renderTranscript();
        break;
      case "turn_event": {
        const turn = findTurn(ev.agent, ev.turn_id, ev.at);
        turn.events.push({ kind: ev.event_kind || "text", text: ev.text, tool: ev.tool, is_error: ev.is_error });
        if (turn.events.length > 200) turn.events.splice(0, turn.events.length - 200);
        if (view.name === ev.agent) renderTranscript();
        break;
      }
      case "turn_finished": {
        const turn = findTurn(ev.agent, ev.turn_id, ev.at);
        const tokens = (ev.input_tokens || 0) + (ev.output_tokens || 0) + (ev.cache_read_tokens || 0) + (ev.cache_write_tokens || 0);
        turn.finished = { outcome: ev.outcome, error: ev.error, at: ev.at, tokens, model: ev.model };
        if (view.name === ev.agent) renderAgentView();
        break;
      }
      case "transient_set":
        state.transients.set(ev.name, ev.transient_kind);
        renderAgents();
        break;
      case "transient_cleared":
        state.transients.delete(ev.name);
        renderAgents();
        break;
      case "container_state_changed":
        state.agents.set(ev.row.name, ev.row);
        state.tombstones = state.tombstones.filter((n) => n !== ev.row.name);
        renderAgents();
        break;
      case "container_removed":
        state.agents.delete(ev.name);
        state.transients.delete(ev.name);
        renderAgents();
        break;
      default:
        break; // a kind this page does not know yet: ignore, as the protocol allows
    }
  }

  // ---------------------------------------------------------------- rendering, keyed so typing survives updates
  const approvalEls = new Map();
  const questionEls = new Map();
  const permissionEls = new Map();
  const agentEls = new Map();

  function renderAll() {
    renderAttention();
    renderAgents();
    renderLog();
  }

  // ---------------------------------------------------------------- one agent's view (#agent=NAME)
  const SVG = "http://www.w3.org/2000/svg";
  const view = { name: null, offset: null, text: "", timer: null, reminders: null, remindersFor: null, transcriptFor: null, logFor: null };

  function viewedAgent() {
    const m = /^#agent=(.+)$/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }

  function fact(label, value) {
    return value === null || value === undefined || value === "" ? [] : [h("dt", { text: label }), h("dd", { text: String(value) })];
  }

  // A small bar chart of usage over time, drawn as SVG elements (never markup from data).
  function usageChart(points) {
    const width = 240, height = 48;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("class", "usage-chart");
    svg.setAttribute("role", "img");
    const max = Math.max(1, ...points.map((p) => p.value));
    const step = width / Math.max(points.length, 12); // a few turns stay bars, not one slab
    points.forEach((p, i) => {
      const bar = document.createElementNS(SVG, "rect");
      const barHeight = Math.max(1, (p.value / max) * (height - 2));
      bar.setAttribute("x", String(i * step + 1));
      bar.setAttribute("y", String(height - barHeight));
      bar.setAttribute("width", String(Math.max(1, step - 2)));
      bar.setAttribute("height", String(barHeight));
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = `${p.label}: ${p.value}`;
      bar.append(tip);
      svg.append(bar);
    });
    svg.setAttribute("aria-label", `usage over ${points.length} periods`);
    return svg;
  }

  function viewButtons(name, a) {
    if (!a) return [];
    const offline = !isLive();
    const transient = state.transients.get(name);
    const make = (op, label, fields, disabled) => {
      const b = h("button", { text: label, "data-op": op });
      b.disabled = offline || Boolean(transient) || disabled;
      b.addEventListener("click", () => run(b, op, { name, ...fields }));
      return b;
    };
    return [
      a.running ? make("stop", "Stop", {}, false) : make("start", "Start", {}, false),
      make("restart", "Restart", {}, false),
      make("rebuild", "Rebuild", {}, false),
      a.paused ? make("set_paused", "Resume", { paused: false }, false) : make("set_paused", "Pause", { paused: true }, false),
      make("interrupt", "Interrupt turn", {}, !a.running),
    ];
  }

  function renderAgentView() {
    const name = viewedAgent();
    const panel = $("agent-view");
    if (!name || (name !== "manager" && !state.agents.has(name))) {
      panel.hidden = true;
      if (view.timer) clearInterval(view.timer);
      view.timer = null;
      view.name = null;
      return;
    }
    panel.hidden = false;
    if (view.name !== name) {
      view.name = name;
      view.offset = null;
      view.text = "";
      $("agent-view-log").textContent = "";
      if (view.timer) clearInterval(view.timer);
      view.timer = setInterval(pollLog, 2000);
      view.logFor = null;
      view.reminders = null;
      view.remindersFor = null;
      view.transcriptFor = null;
    }
    // Read at once when the page is live (a view opened by the URL is rendered before the first snapshot).
    if (view.logFor !== name && isLive()) {
      view.logFor = name;
      pollLog();
    }
    if (name !== "manager" && view.transcriptFor !== name && isLive()) {
      view.transcriptFor = name;
      loadTranscript(name);
    }
    const a = state.agents.get(name) || null;
    $("agent-view-title").textContent = name;
    const badge = $("agent-view-state");
    if (a) {
      const transient = state.transients.get(name) || null;
      const [cls, label] = isLive() ? agentState(a, transient) : ["unknown", "unknown"];
      badge.className = `state ${cls}`;
      badge.textContent = label;
    } else {
      badge.className = "state";
      badge.textContent = "manager";
    }
    const flags = a ? ["needs_login", "needs_update", "paused", "failed", "budget_exceeded"].filter((f) => a[f]).map((f) => f.replace("_", " ")) : [];
    $("agent-view-facts").replaceChildren(
      ...(a
        ? [
          ...fact("status", a.status_text),
          ...fact("model", a.active_model),
          ...fact("waiting", a.pending_messages),
          ...fact("deployed", a.deployed_sha ? a.deployed_sha.slice(0, 12) : null),
          ...fact("flags", flags.join(", ")),
          ...fact("failed because", a.failed ? a.failed_reason : null),
          ...fact("reminders", a.pending_reminders),
        ]
        : fact("about", "the hive's manager: it proposes spawns and config changes for your approval")),
    );
    $("agent-view-actions").replaceChildren(...viewButtons(name, a));
    // Usage from the status row (AgentUsage), and a chart of tokens per turn from the turns seen here.
    const usage = a && a.usage ? a.usage : null;
    const usageBox = $("agent-view-usage");
    usageBox.replaceChildren();
    if (usage) {
      const money = (x) => `$${(x || 0).toFixed(2)}`;
      const limit = [
        usage.daily_tokens_limit != null ? `${usage.daily_tokens_limit} tokens/day` : null,
        usage.daily_usd_limit != null ? `${money(usage.daily_usd_limit)}/day` : null,
      ].filter(Boolean).join(", ");
      const spent = usage.turns
        ? `today ${usage.today_tokens} tokens, ${money(usage.today_cost_usd)} · all time ${usage.total_tokens} tokens, ${money(usage.total_cost_usd)} over ${usage.turns} turn${usage.turns === 1 ? "" : "s"}`
        : "no turns yet";
      usageBox.append(h("div", { class: "meta usage-line", text: `Usage: ${spent}` }));
      usageBox.append(h("div", { class: `meta budget-line${a.budget_exceeded ? " over" : ""}`,
        text: `Budget: ${limit || "unlimited"}${a.budget_exceeded ? " — exceeded: the agent is parked until it is raised or the UTC day turns" : ""}` }));
    }
    const finished = turnsOf(name).filter((t) => t.finished);
    if (finished.length) {
      usageBox.append(usageChart(finished.map((t) => ({ label: clock(t.finished.at), value: t.finished.tokens || 0 }))));
    }
    renderReminders(a);
    renderTranscript();
  }

  function renderTranscript() {
    const name = view.name;
    const list = $("agent-view-transcript");
    const turns = name ? turnsOf(name) : [];
    $("agent-view-transcript-title").hidden = turns.length === 0;
    list.replaceChildren(
      ...turns.slice().reverse().map((t) => {
        const outcome = t.finished ? t.finished.outcome : "running";
        return h("li", { class: `turn ${t.finished ? "done" : "live"}`, "data-turn": t.turn_id },
          h("div", { class: "turn-head" },
            h("b", { text: clock(t.at) }),
            h("span", { class: `outcome ${outcome}`, text: outcome }),
            t.finished && t.finished.error ? h("span", { class: "meta", text: t.finished.error }) : null),
          ...t.events.map((e) =>
            h("div", { class: `turn-event ${e.kind}${e.is_error ? " error" : ""}` },
              e.tool ? h("span", { class: "tool", text: e.tool }) : null,
              e.text ? h("span", { class: "text", text: e.text }) : null)));
      }),
    );
  }

  // The turns before the page opened come from the durable transcript (dashboard op `transcript`);
  // turns seen live since then are kept, and a turn in both is taken from the transcript, which is whole.
  async function loadTranscript(name) {
    let reply;
    try {
      reply = await act("transcript", { name, limit: 200 });
    } catch (err) {
      if (view.name === name) view.transcriptFor = null; // tried again on the next render
      return;
    }
    if (view.name !== name) return;
    const loaded = [];
    const byId = new Map();
    for (const e of reply.entries) {
      let turn = byId.get(e.turn_id);
      if (!turn) {
        turn = { turn_id: e.turn_id, at: e.at, events: [], finished: null };
        byId.set(e.turn_id, turn);
        loaded.push(turn);
      }
      if (e.kind === "turn_started") turn.at = e.at;
      else if (e.kind === "turn_finished") turn.finished = { outcome: e.outcome, error: e.text, at: e.at, tokens: e.tokens, model: e.model };
      else turn.events.push({ kind: e.kind, text: e.text, tool: e.tool, is_error: e.is_error });
    }
    const live = turnsOf(name).filter((t) => !byId.has(t.turn_id));
    state.turns.set(name, [...loaded, ...live]);
    trimTurns(name);
    renderAgentView();
  }

  // Pending reminders, re-read whenever the status row's count changes.
  function renderReminders(a) {
    const box = $("agent-view-reminders");
    const count = a ? a.pending_reminders || 0 : 0;
    if (a && view.remindersFor !== count) {
      view.remindersFor = count;
      const name = view.name;
      if (count === 0) view.reminders = [];
      else {
        act("reminders", { name }).then((reply) => {
          if (view.name !== name) return;
          view.reminders = reply.reminders;
          renderReminders(state.agents.get(name) || null);
        }, () => { view.remindersFor = null; });
      }
    }
    const items = view.reminders || [];
    box.hidden = items.length === 0;
    $("agent-view-reminder-list").replaceChildren(
      ...items.map((r) => h("li", {}, h("span", { class: "when", text: `due ${new Date(r.due_at * 1000).toLocaleString()}` }), h("span", { text: r.body }))),
    );
  }

  async function pollLog() {
    const name = view.name;
    if (!name || !isLive() || document.hidden) return;
    let chunk;
    try {
      chunk = await act("log_tail", { name, offset: view.offset, max_bytes: 16384 });
    } catch (err) {
      $("agent-view-log-note").textContent = err.message;
      return;
    }
    if (view.name !== name) return;
    if (chunk.rotated) view.text += "\n-- the log was rotated --\n";
    view.text = (view.text + chunk.text).slice(-32768);
    view.offset = chunk.offset;
    const pre = $("agent-view-log");
    const stick = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
    pre.textContent = view.text || "(nothing logged yet)";
    if (stick) pre.scrollTop = pre.scrollHeight;
    $("agent-view-log-note").textContent = "";
  }

  function sync(container, elements, items, build, update) {
    for (const [key, el] of elements) {
      if (!items.has(key)) {
        el.remove();
        elements.delete(key);
      }
    }
    for (const [key, item] of [...items].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      let el = elements.get(key);
      if (!el) {
        el = build(item);
        elements.set(key, el);
      }
      if (update) update(el, item);
      container.append(el); // keeps order; moving an element keeps its inputs
    }
  }

  function remember(kind, id, agent, how, by, at) {
    state.history.unshift({ kind, id, agent, how, by, at });
    if (state.history.length > 200) state.history.length = 200;
  }

  function turnsOf(agent) {
    if (!state.turns.has(agent)) state.turns.set(agent, []);
    return state.turns.get(agent);
  }

  function trimTurns(agent) {
    const turns = turnsOf(agent);
    if (turns.length > 20) turns.splice(0, turns.length - 20);
  }

  function findTurn(agent, turnId, at) {
    const turns = turnsOf(agent);
    let turn = turns.find((t) => t.turn_id === turnId);
    if (!turn) {
      turn = { turn_id: turnId, at, events: [], finished: null };
      turns.push(turn);
      trimTurns(agent);
    }
    return turn;
  }

  function ago(ts) {
    const s = Math.max(0, Math.round(Date.now() / 1000 - ts));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }

  function buildPermission(r) {
    const allow = h("button", { class: "approve", text: "Allow" });
    const always = h("button", { text: "Always allow this tool" });
    const deny = h("button", { class: "deny", text: "Deny" });
    const waited = h("span", { class: "waited" });
    const countdown = h("span", { class: "countdown" });
    const decide = (button, op, fields, done) => async () => {
      for (const b of [allow, always, deny]) if (b !== button) b.disabled = true;
      const result = await run(button, op, { id: r.id, ...fields }, done);
      if (result !== undefined) card.classList.add("leaving");
      for (const b of [allow, always, deny]) b.disabled = !isLive();
    };
    allow.addEventListener("click", decide(allow, "allow_permission", { always: false }, `allowed #${r.id}`));
    always.addEventListener("click", decide(always, "allow_permission", { always: true }, `always allowed ${r.tool} for ${r.agent}`));
    deny.addEventListener("click", decide(deny, "deny_permission", {}, `denied #${r.id}`));
    let input = r.input_json || "";
    try {
      input = JSON.stringify(JSON.parse(input), null, 2);
    } catch (err) {
      // shown as it came
    }
    const card = h(
      "article",
      { class: "item permission", "data-permission": r.id },
      h("div", { class: "item-head" },
        h("span", { class: "item-title", text: `#${r.id} permission` }),
        h("span", { class: "tag", text: r.agent }),
        h("span", { class: "meta" }, "waiting ", waited, " · answer within ", countdown)),
      h("p", { class: "desc" }, "wants to use ", h("b", { text: r.tool })),
      input ? h("pre", { class: "tool-input", text: input }) : null,
      h("div", { class: "row" }, allow, always, deny),
    );
    card.deadline = r.deadline_at;
    card.countdown = countdown;
    card.since = r.requested_at;
    card.waited = waited;
    tickCountdown(card);
    return card;
  }

  // One "Needs you" list, oldest first across approvals, questions and permission requests.
  function rankAttention() {
    const when = [];
    for (const [id, a] of state.approvals) when.push([a.requested_at || 0, "a", id]);
    for (const [id, q] of state.questions) when.push([q.asked_at || 0, "q", id]);
    for (const [id, r] of state.permissions) when.push([r.requested_at || 0, "p", id]);
    when.sort((x, y) => x[0] - y[0] || (x[2] < y[2] ? -1 : 1));
    const els = { a: approvalEls, q: questionEls, p: permissionEls };
    when.forEach(([, kind, id], i) => {
      const el = els[kind].get(id);
      if (el) el.style.order = String(i + 1);
    });
  }

  function renderHistory() {
    $("history-count").textContent = state.history.length ? String(state.history.length) : "";
    $("history-box").hidden = state.history.length === 0;
    $("history").replaceChildren(
      ...state.history.map((e) =>
        h("li", {},
          h("span", { class: "when", text: e.at ? clock(e.at) : "" }),
          h("b", { text: `${e.kind} #${e.id}` }),
          e.agent ? h("span", { class: "tag", text: e.agent }) : null,
          h("span", { text: e.how }),
          e.by ? h("span", { class: "meta", text: `by ${e.by}` }) : null)),
    );
  }

  function renderAttention() {
    sync($("approvals"), approvalEls, state.approvals, buildApproval);
    sync($("questions"), questionEls, state.questions, buildQuestion);
    sync($("permissions"), permissionEls, state.permissions, buildPermission);
    rankAttention();
    renderHistory();
    if (!isLive()) setOffline(true);
    const n = state.approvals.size + state.questions.size + state.permissions.size;
    $("attention-count").textContent = n ? String(n) : "";
    $("attention-empty").hidden = n > 0 || !isLive();
    document.title = n ? `(${n}) hive` : "hive";
  }

  function diffView(diff) {
    const pre = h("pre", { class: "diff-body" });
    const all = diff.replace(/\n$/, "").split("\n");
    for (const line of all) {
      let cls = "";
      if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff ") || line.startsWith("index ")) cls = "file";
      else if (line.startsWith("+")) cls = "add";
      else if (line.startsWith("-")) cls = "del";
      else if (line.startsWith("@@")) cls = "hunk";
      pre.append(h("span", { class: cls, text: line || " " }));
    }
    const lines = all.length;
    return h("details", { class: "diff", open: lines <= 40 }, h("summary", { text: `diff · ${lines} lines` }), pre);
  }

  function buildApproval(a) {
    const kind = a.approval_kind === "spawn" ? "spawn" : "apply commit";
    const note = h("input", { type: "text", placeholder: "note (optional)", "aria-label": `note for approval ${a.id}` });
    const approve = h("button", { class: "approve", text: "Approve" });
    const deny = h("button", { class: "deny", text: "Deny" });
    const waited = h("span", { class: "waited" });
    const card = h(
      "article",
      { class: "item approval", "data-approval": a.id },
      h("div", { class: "item-head" },
        h("span", { class: "item-title", text: `#${a.id} ${kind}` }),
        h("span", { class: "tag", text: a.agent }),
        a.sha_short ? h("span", { class: "sha", text: a.sha_short }) : null,
        h("span", { class: "meta" }, "waiting ", waited)),
      a.description ? h("p", { class: "desc", text: a.description }) : null,
      a.diff ? diffView(a.diff) : null,
      h("div", { class: "row" }, note, approve, deny),
    );
    card.since = a.requested_at;
    card.waited = waited;
    tickCountdown(card);
    approve.addEventListener("click", async () => {
      deny.disabled = true;
      const done = await run(approve, "approve", { id: a.id, note: note.value || null }, `approved #${a.id}`);
      if (done !== undefined) card.classList.add("leaving");
      deny.disabled = !isLive();
    });
    deny.addEventListener("click", async () => {
      approve.disabled = true;
      const done = await run(deny, "deny", { id: a.id, note: note.value || null }, `denied #${a.id}`);
      if (done !== undefined) card.classList.add("leaving");
      approve.disabled = !isLive();
    });
    return card;
  }

  function buildQuestion(q) {
    const choices = [];
    const options = h("div", { class: "options" });
    for (const opt of q.options || []) {
      const input = h("input", { type: q.multi ? "checkbox" : "radio", name: `q${q.id}`, value: opt });
      choices.push(input);
      options.append(h("label", {}, input, h("span", { text: opt })));
    }
    const free = h("input", {
      type: "text",
      placeholder: q.options && q.options.length ? "or write an answer" : "your answer",
      "aria-label": `answer to question ${q.id}`,
    });
    const answer = h("button", { class: "primary", text: "Answer" });
    const cancel = h("button", { class: "link", text: "cancel question" });
    const countdown = h("span", { class: "countdown" });
    const waited = h("span", { class: "waited" });
    const submit = async () => {
      const picked = choices.filter((c) => c.checked).map((c) => c.value);
      const text = free.value.trim();
      let value;
      if (text) value = text;
      else if (q.multi && picked.length) value = picked;
      else if (picked.length) value = picked[0];
      else {
        toast("pick an option or write an answer");
        return;
      }
      const done = await run(answer, "answer", { id: q.id, answer: value }, `answered #${q.id}`);
      if (done !== undefined) card.classList.add("leaving");
    };
    answer.addEventListener("click", submit);
    free.addEventListener("keydown", (e) => {
      if (e.key === "Enter") submit();
    });
    cancel.addEventListener("click", () => run(cancel, "cancel_question", { id: q.id }, `cancelled #${q.id}`));
    const card = h(
      "article",
      { class: "item question", "data-question": q.id },
      h("div", { class: "item-head" },
        h("span", { class: "item-title", text: `#${q.id} question` }),
        h("span", { class: "tag", text: q.asker }),
        h("span", { class: "meta" }, "waiting ", waited, q.deadline_at ? " · answer within " : "", q.deadline_at ? countdown : null)),
      h("p", { class: "desc", text: q.question }),
      options.childElementCount ? options : null,
      q.default_answer ? h("div", { class: "default", text: `If nobody answers in time: “${q.default_answer}”` }) : null,
      h("div", { class: "row" }, free, answer, cancel),
    );
    card.deadline = q.deadline_at;
    card.countdown = countdown;
    card.since = q.asked_at;
    card.waited = waited;
    tickCountdown(card);
    return card;
  }

  function tickCountdown(card) {
    if (card.waited && card.since) card.waited.textContent = ago(card.since);
    if (!card.deadline) return;
    const left = Math.max(0, Math.round(card.deadline - Date.now() / 1000));
    const m = Math.floor(left / 60);
    const s = String(left % 60).padStart(2, "0");
    card.countdown.textContent = left >= 3600 ? `${Math.floor(left / 3600)}h ${m % 60}m` : `${m}:${s}`;
    card.countdown.classList.toggle("soon", left < 60);
  }
  setInterval(() => {
    approvalEls.forEach(tickCountdown);
    questionEls.forEach(tickCountdown);
    permissionEls.forEach(tickCountdown);
  }, 1000);

  function agentState(a, transient) {
    if (transient) return ["busy", transient];
    if (a.failed) return ["failed", "failed"];
    if (a.running && a.paused) return ["paused", "paused"];
    if (a.running) return ["running", "running"];
    return ["stopped", "stopped"];
  }

  function buildAgent(a) {
    const buttons = {};
    for (const [op, label] of [["start", "Start"], ["stop", "Stop"], ["restart", "Restart"]]) {
      const b = h("button", { text: label, "data-op": op });
      b.addEventListener("click", () => run(b, op, { name: a.name }));
      buttons[op] = b;
    }
    const card = h(
      "article",
      { class: "agent", id: `agent-${a.name}`, "data-agent": a.name },
      h("div", { class: "agent-head" },
        h("a", { class: "agent-name", href: `#agent=${encodeURIComponent(a.name)}`, text: a.name, title: "open its view" }),
        h("span", { class: "state" })),
      h("div", { class: "status-text", dir: "auto" }),
      h("div", { class: "meta" }),
      h("div", { class: "row" }, buttons.start, buttons.stop, buttons.restart),
    );
    card.buttons = buttons;
    return card;
  }

  function updateAgent(card, a) {
    const transient = state.transients.get(a.name) || null;
    const offline = !isLive();
    const [cls, label] = offline ? ["unknown", "unknown"] : agentState(a, transient);
    const badge = card.querySelector(".state");
    badge.className = `state ${cls}`;
    badge.replaceChildren(...(transient && !offline ? [h("span", { class: "spinner", "aria-hidden": "true" })] : []), label);
    card.querySelector(".status-text").textContent = visible(a.status_text || "");
    const bits = [];
    if (a.pending_messages) bits.push(`${a.pending_messages} message${a.pending_messages === 1 ? "" : "s"} waiting`);
    if (a.deployed_sha) bits.push(`at ${a.deployed_sha.slice(0, 8)}`);
    if (a.needs_update) bits.push("needs update");
    if (a.needs_login) bits.push("needs login");
    card.querySelector(".meta").textContent = bits.join(" · ");
    card.buttons.start.disabled = offline || Boolean(transient) || a.running;
    card.buttons.stop.disabled = offline || Boolean(transient) || !a.running;
    card.buttons.restart.disabled = offline || Boolean(transient);
    card.classList.toggle("target", location.hash === `#agent=${a.name}`);
  }

  function renderAgents() {
    sync($("agents"), agentEls, state.agents, buildAgent, updateAgent);
    if (state.agents.size) $("agents").append(managerCard); // the manager last, after the agents
    $("agents-count").textContent = state.agents.size ? String(state.agents.size) : "";
    $("agents-empty").hidden = state.agents.size > 0 || !isLive();
    const tomb = $("tombstones");
    tomb.hidden = state.tombstones.length === 0;
    tomb.textContent = state.tombstones.length ? `Kept state of destroyed agents: ${state.tombstones.join(", ")}` : "";
    renderFederation();
    renderRecipients();
    renderAgentView();
  }

  // The manager is not in the agents' status rows; its card opens its view (its log, what it is for).
  const managerCard = h(
    "article",
    { class: "agent manager-card", "data-agent": "manager" },
    h("div", { class: "agent-head" },
      h("a", { class: "agent-name", href: "#agent=manager", text: "manager", title: "open its view" }),
      h("span", { class: "state", text: "manager" })),
    h("div", { class: "status-text", text: "proposes spawns and config changes for your approval" }),
  );

  function renderRecipients() {
    const select = $("send-to");
    const current = select.value;
    const names = [...state.agents.keys()].sort();
    const remote = (state.remote || []).map((a) => `${a.name}@${a.hive}`).sort();
    const wanted = [...names, ...remote, "manager", "*"];
    const have = [...select.options].map((o) => o.value);
    if (wanted.join("\u0000") === have.join("\u0000")) return;
    select.replaceChildren(...wanted.map((n) => h("option", { value: n, text: n === "*" ? "everyone" : n })));
    if (wanted.includes(current)) select.value = current;
    const filter = $("log-agent");
    const chosen = filter.value;
    const filterNames = ["", ...names, "manager", "operator"];
    if (filterNames.join("\u0000") !== [...filter.options].map((o) => o.value).join("\u0000")) {
      filter.replaceChildren(...filterNames.map((n) => h("option", { value: n, text: n || "everyone" })));
      filter.value = filterNames.includes(chosen) ? chosen : "";
    }
  }

  // The message log shows what matters: system notices only when asked, one agent's traffic when chosen.
  function shownInLog(e) {
    if (e.from === "system" && !$("log-system").checked) return false;
    const agent = $("log-agent").value;
    return !agent || e.from === agent || e.to === agent || (e.to === "*" && agent !== "operator");
  }

  // Messages from `system` carry a JSON HelperEvent: show its name and fields, not raw JSON.
  function messageBody(e) {
    if (e.from === "system" && e.body.startsWith("{")) {
      try {
        const ev = JSON.parse(e.body);
        if (ev && typeof ev.event === "string") {
          const fields = Object.entries(ev)
            .filter(([k, v]) => k !== "event" && v !== null && v !== "")
            .map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`);
          return h("div", { class: "body" }, h("span", { class: "event-name", text: ev.event.replaceAll("_", " ") }), fields.join(" · "));
        }
      } catch (err) {
        // not JSON after all: shown as text below
      }
    }
    return h("div", { class: "body", text: e.body });
  }

  function renderLog() {
    const list = $("log");
    const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.replaceChildren(
      ...state.log.filter(shownInLog).map((e) =>
        h("li", { class: `from-${e.from === "operator" ? "operator" : e.from === "system" ? "system" : "agent"}` },
          h("div", { class: "who" },
            h("b", { text: e.from }), "→", h("b", { text: e.to === "*" ? "everyone" : e.to }),
            e.delivered ? h("span", { class: "tick", title: "picked up", text: "✓" }) : null,
            h("span", { class: "when", text: clock(e.at) })),
          messageBody(e))),
    );
    if (stick) list.scrollTop = list.scrollHeight;
  }

  // ---------------------------------------------------------------- the send box
  const form = $("send");
  const body = $("send-body");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = body.value;
    if (!text.trim()) return;
    const to = $("send-to").value;
    const result = await run(form.querySelector("button"), "send", { to, body: text });
    if (result !== undefined) body.value = "";
  });
  body.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });
  window.addEventListener("hashchange", () => {
    renderAgents();
    renderAgentView();
  });
  $("log-agent").addEventListener("change", renderLog);
  $("log-system").addEventListener("change", renderLog);

  // For the browser's devtools (and the browser test): look at the state, force a reconnect.
  window.hive = Object.freeze({ state, stats, reconnect: () => ws && ws.close() });

  setOffline(true); // nothing can be acted on before the first snapshot
  connect();
})();

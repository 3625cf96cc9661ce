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
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key in el && typeof value !== "string") el[key] = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
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
      } else if (frame.type === "resumed") {
        stats.resumes++;
        synced = true;
        backoff = 500;
        state.seq = frame.seq;
        setConn("live", "live");
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
        setConn("reconnecting", ev.code === 1001 ? "daemon restarting…" : "reconnecting…");
      }
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 5000);
    });
  }

  function act(op, fields) {
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject(new Error("not connected"));
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
      button.disabled = false;
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
        description: a.description, diff: a.diff,
      }]),
    );
    state.questions = new Map(snap.questions.filter((q) => q.target === null).map((q) => [q.id, q]));
    state.log = snap.messages.map((m) => ({ id: m.id, from: m.from, to: m.to, body: m.body, at: m.sent_at, delivered: m.delivered_at !== null }));
    state.tombstones = snap.tombstones || [];
    renderAll();
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
        state.approvals.set(ev.id, ev);
        renderAttention();
        break;
      case "approval_resolved":
        state.approvals.delete(ev.id);
        renderAttention();
        break;
      case "question_added":
        state.questions.set(ev.id, ev);
        renderAttention();
        break;
      case "question_resolved":
        state.questions.delete(ev.id);
        renderAttention();
        break;
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
  const agentEls = new Map();

  function renderAll() {
    renderAttention();
    renderAgents();
    renderLog();
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

  function renderAttention() {
    sync($("approvals"), approvalEls, state.approvals, buildApproval);
    sync($("questions"), questionEls, state.questions, buildQuestion);
    const n = state.approvals.size + state.questions.size;
    $("attention-count").textContent = n ? String(n) : "";
    $("attention-empty").hidden = n > 0;
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
    const card = h(
      "article",
      { class: "item approval", "data-approval": a.id },
      h("div", { class: "item-head" },
        h("span", { class: "item-title", text: `#${a.id} ${kind}` }),
        h("span", { class: "tag", text: a.agent }),
        a.sha_short ? h("span", { class: "sha", text: a.sha_short }) : null),
      a.description ? h("p", { class: "desc", text: a.description }) : null,
      a.diff ? diffView(a.diff) : null,
      h("div", { class: "row" }, note, approve, deny),
    );
    approve.addEventListener("click", async () => {
      deny.disabled = true;
      const done = await run(approve, "approve", { id: a.id, note: note.value || null }, `approved #${a.id}`);
      if (done !== undefined) card.classList.add("leaving");
      deny.disabled = false;
    });
    deny.addEventListener("click", async () => {
      approve.disabled = true;
      const done = await run(deny, "deny", { id: a.id, note: note.value || null }, `denied #${a.id}`);
      if (done !== undefined) card.classList.add("leaving");
      approve.disabled = false;
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
        q.deadline_at ? h("span", { class: "meta" }, "answer within ", countdown) : null),
      h("p", { class: "desc", text: q.question }),
      options.childElementCount ? options : null,
      q.default_answer ? h("div", { class: "default", text: `If nobody answers in time: “${q.default_answer}”` }) : null,
      h("div", { class: "row" }, free, answer, cancel),
    );
    card.deadline = q.deadline_at;
    card.countdown = countdown;
    tickCountdown(card);
    return card;
  }

  function tickCountdown(card) {
    if (!card.deadline) return;
    const left = Math.max(0, Math.round(card.deadline - Date.now() / 1000));
    const m = Math.floor(left / 60);
    const s = String(left % 60).padStart(2, "0");
    card.countdown.textContent = left >= 3600 ? `${Math.floor(left / 3600)}h ${m % 60}m` : `${m}:${s}`;
    card.countdown.classList.toggle("soon", left < 60);
  }
  setInterval(() => questionEls.forEach(tickCountdown), 1000);

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
      h("div", { class: "agent-head" }, h("span", { class: "agent-name", text: a.name }), h("span", { class: "state" })),
      h("div", { class: "status-text" }),
      h("div", { class: "meta" }),
      h("div", { class: "row" }, buttons.start, buttons.stop, buttons.restart),
    );
    card.buttons = buttons;
    return card;
  }

  function updateAgent(card, a) {
    const transient = state.transients.get(a.name) || null;
    const [cls, label] = agentState(a, transient);
    const badge = card.querySelector(".state");
    badge.className = `state ${cls}`;
    badge.replaceChildren(...(transient ? [h("span", { class: "spinner", "aria-hidden": "true" })] : []), label);
    card.querySelector(".status-text").textContent = a.status_text || "";
    const bits = [];
    if (a.pending_messages) bits.push(`${a.pending_messages} message${a.pending_messages === 1 ? "" : "s"} waiting`);
    if (a.deployed_sha) bits.push(`at ${a.deployed_sha.slice(0, 8)}`);
    if (a.needs_update) bits.push("needs update");
    if (a.needs_login) bits.push("needs login");
    card.querySelector(".meta").textContent = bits.join(" · ");
    card.buttons.start.disabled = Boolean(transient) || a.running;
    card.buttons.stop.disabled = Boolean(transient) || !a.running;
    card.buttons.restart.disabled = Boolean(transient);
    card.classList.toggle("target", location.hash === `#agent=${a.name}`);
  }

  function renderAgents() {
    sync($("agents"), agentEls, state.agents, buildAgent, updateAgent);
    $("agents-count").textContent = state.agents.size ? String(state.agents.size) : "";
    $("agents-empty").hidden = state.agents.size > 0;
    const tomb = $("tombstones");
    tomb.hidden = state.tombstones.length === 0;
    tomb.textContent = state.tombstones.length ? `Kept state of destroyed agents: ${state.tombstones.join(", ")}` : "";
    renderRecipients();
  }

  function renderRecipients() {
    const select = $("send-to");
    const current = select.value;
    const names = [...state.agents.keys()].sort();
    const wanted = [...names, "manager", "*"];
    const have = [...select.options].map((o) => o.value);
    if (wanted.join("\u0000") === have.join("\u0000")) return;
    select.replaceChildren(...wanted.map((n) => h("option", { value: n, text: n === "*" ? "everyone" : n })));
    if (wanted.includes(current)) select.value = current;
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
      ...state.log.map((e) =>
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
  window.addEventListener("hashchange", renderAgents);

  // For the browser's devtools (and the browser test): look at the state, force a reconnect.
  window.hive = Object.freeze({ state, stats, reconnect: () => ws && ws.close() });

  connect();
})();

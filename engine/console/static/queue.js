/* tagwatch monitor console: the alert queue.
 *
 * One row per alert id, updated in place as records and actions arrive on the event
 * stream. Order (the server's key, engine/console/queue.py): alerts still to be worked
 * (not closed, not resolved) first; among them new (unacknowledged) before acknowledged;
 * severity (critical first); the subject's risk (highest first); among open alerts the
 * oldest raised first (it has waited longest), among the rest the latest closed first;
 * the id last. Nothing is paged.
 * Filters (state, kind, team, subject) never hide a critical alert that is not resolved:
 * it stays in the list with a note saying the filter would have hidden it. */
"use strict";

(function () {
  const { h, $ } = TW;
  const SEVERITY = { critical: 0, high: 1, medium: 2, low: 3 };

  function cmp(a, b) {
    const doneA = a.state === "closed" || a.workflow === "resolved" ? 1 : 0;
    const doneB = b.state === "closed" || b.workflow === "resolved" ? 1 : 0;
    const ageA = doneA ? -(a.closed_t || a.raised_t) : a.raised_t;
    const ageB = doneB ? -(b.closed_t || b.raised_t) : b.raised_t;
    return (
      doneA - doneB ||
      (a.workflow === "new" ? 0 : 1) - (b.workflow === "new" ? 0 : 1) ||
      (SEVERITY[a.severity] ?? 9) - (SEVERITY[b.severity] ?? 9) ||
      (b.risk ?? 1) - (a.risk ?? 1) ||
      ageA - ageB ||
      (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
    );
  }

  /** A critical alert nobody has resolved is never filtered out of sight. */
  const pinned = (a) => a.severity === "critical" && a.workflow !== "resolved";

  const Q = (TW.queue = {
    alerts: new Map(), // id -> queue object
    rows: new Map(), // id -> <tr>
    order: [], // ids, in queue order
    loaded: false,
    filters: { state: "open", kind: "", team: "", subject: "" },
    cmp,
  });

  Q.matches = function matches(a) {
    const f = Q.filters;
    if (f.state === "open" && a.state === "closed") return false;
    if (f.state === "closed" && a.state !== "closed") return false;
    if (f.kind && a.kind !== f.kind) return false;
    if (f.team && (a.team || "") !== f.team) return false;
    if (f.subject && !String(a.subject).toLowerCase().includes(f.subject.toLowerCase()))
      return false;
    return true;
  };
  const visible = (a) => Q.matches(a) || pinned(a);

  function cell(cls, testid, ...content) {
    return h(`td.${cls}`, { testid }, ...content);
  }

  function fillRow(tr, a) {
    const href = `#/alert/${encodeURIComponent(a.id)}`;
    const held = !Q.matches(a);
    tr.className = `sev-${a.severity} wf-${a.workflow} st-${a.state}${held ? " pinned" : ""}`;
    tr.dataset.id = a.id;
    tr.dataset.severity = a.severity;
    tr.dataset.workflow = a.workflow;
    tr.dataset.state = a.state;
    TW.clear(tr).append(
      cell("c-sev", "cell-severity", h("span.badge", { text: a.severity })),
      cell(
        "c-kind",
        "cell-kind",
        h("a", { href, text: TW.label(a.kind), "aria-label": `Open alert: ${TW.label(a.kind)}, ${a.subject}` }),
        held ? h("span.note", { testid: "pinned-note", text: " shown: critical" }) : null,
      ),
      cell("c-subject", "cell-subject",
        h("a", { href: `#/subject/${encodeURIComponent(a.subject)}`, text: a.subject }),
        a.risk ? h("span.risk", { title: "risk", text: ` r${a.risk}` }) : null),
      cell("c-zone", "cell-zone", a.zone || "—"),
      cell("c-conf", "cell-confidence", TW.pct(a.confidence)),
      cell("c-age", "cell-age", TW.duration(TW.now() - a.opened_t)),
      cell("c-where", "cell-where", TW.where(a) || "—"),
      cell("c-wf", "cell-workflow", h("span.wf", { text: a.workflow })),
      cell("c-assigned", "cell-assigned", a.assigned || "—"),
      cell("c-state", "cell-state", a.state === "closed" ? `closed ${TW.clock(a.closed_t)}` : a.state),
    );
    tr.title = `raised ${TW.clock(a.raised_t)}, opened ${TW.clock(a.opened_t)}`;
  }

  function rowFor(a) {
    let tr = Q.rows.get(a.id);
    if (!tr) {
      tr = h("tr", { testid: "queue-row" });
      Q.rows.set(a.id, tr);
    }
    fillRow(tr, a);
    return tr;
  }

  /** Put the row of `id` where the order says (or take it out when filtered). */
  function place(id) {
    const body = $("#queue-body");
    const a = Q.alerts.get(id);
    const tr = rowFor(a);
    if (!visible(a)) {
      tr.remove();
      return;
    }
    const i = Q.order.indexOf(id);
    let next = null;
    for (let j = i + 1; j < Q.order.length && !next; j++) {
      const r = Q.rows.get(Q.order[j]);
      if (r && r.parentNode === body) next = r;
    }
    if (tr.nextSibling !== next || tr.parentNode !== body) body.insertBefore(tr, next);
  }

  function insertSorted(id) {
    const a = Q.alerts.get(id);
    let lo = 0;
    let hi = Q.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cmp(Q.alerts.get(Q.order[mid]), a) < 0) lo = mid + 1;
      else hi = mid;
    }
    Q.order.splice(lo, 0, id);
  }

  /** Rebuild the whole table (a load, a filter change). */
  Q.render = function render() {
    const body = TW.clear($("#queue-body"));
    const frag = document.createDocumentFragment();
    for (const id of Q.order) {
      const a = Q.alerts.get(id);
      if (visible(a)) frag.append(rowFor(a));
    }
    body.append(frag);
    Q.summary();
  };

  /** Counts per workflow state and state, the empty note, filter choices, the banner. */
  Q.summary = function summary() {
    const n = { new: 0, acknowledged: 0, resolved: 0, open: 0, closed: 0, critical: 0 };
    const kinds = new Set();
    const teams = new Set();
    let unackedCritical = 0;
    for (const a of Q.alerts.values()) {
      n[a.workflow] = (n[a.workflow] || 0) + 1;
      n[a.state === "closed" ? "closed" : "open"] += 1;
      if (a.severity === "critical" && a.state !== "closed") n.critical += 1;
      if (a.severity === "critical" && a.workflow === "new") unackedCritical += 1;
      kinds.add(a.kind);
      if (a.team) teams.add(a.team);
    }
    for (const [k, v] of Object.entries(n)) {
      const el = $(`#count-${k}`);
      if (el) el.textContent = String(v);
    }
    const shown = $("#queue-body").childElementCount;
    $("#queue-shown").textContent = `${shown} of ${Q.alerts.size} shown`;
    $("#queue-empty").hidden = shown > 0 || !Q.loaded;
    $("#filter-note").hidden = !$("#queue-body .pinned");
    options($("#f-kind"), kinds, TW.label);
    options($("#f-team"), teams, (x) => x);
    TW.cue.update(unackedCritical);
  };

  function options(select, values, label) {
    const want = ["", ...Array.from(values).sort()];
    const have = Array.from(select.options).map((o) => o.value);
    if (select.value && !want.includes(select.value)) want.push(select.value);
    if (want.join("\n") === have.join("\n")) return;
    const keep = select.value;
    TW.clear(select).append(
      ...want.map((v) => h("option", { value: v, text: v ? label(v) : "all" })),
    );
    select.value = keep;
  }

  /** One queue object, from the stream or an action's answer: update its row in place. */
  Q.upsert = function upsert(a, live) {
    if (!a || !a.id) return;
    const prev = Q.alerts.get(a.id);
    if (prev && typeof prev.seq === "number" && typeof a.seq === "number" && a.seq < prev.seq)
      return; // an older record than the one shown (a catch-up overlapping the stream)
    const fresh =
      live &&
      a.severity === "critical" &&
      a.state !== "closed" &&
      a.workflow === "new" &&
      (!prev || prev.severity !== "critical");
    if (prev) Q.order.splice(Q.order.indexOf(a.id), 1);
    Q.alerts.set(a.id, a);
    insertSorted(a.id);
    place(a.id);
    const tr = Q.rows.get(a.id);
    if (live && tr) {
      tr.classList.remove("changed");
      void tr.offsetWidth;
      tr.classList.add("changed");
    }
    Q.summary();
    if (fresh) TW.cue.alarm(a);
  };

  /** Fetch the whole queue (at login and after every reconnect of the stream). */
  Q.load = async function load() {
    const list = await TW.get("/api/alerts?state=all");
    const before = Q.loaded ? new Set(Q.alerts.keys()) : null;
    Q.alerts = new Map(list.map((a) => [a.id, a]));
    Q.order = list.map((a) => a.id).sort((x, y) => cmp(Q.alerts.get(x), Q.alerts.get(y)));
    for (const id of Array.from(Q.rows.keys())) if (!Q.alerts.has(id)) Q.rows.delete(id);
    Q.loaded = true;
    TW.say($("#queue-status"), "");
    Q.render();
    if (before) {
      // alerts that arrived while the stream was down: cue a new critical among them
      const missed = list.filter(
        (a) => !before.has(a.id) && a.severity === "critical" && a.state !== "closed" && a.workflow === "new",
      );
      if (missed.length) TW.cue.alarm(missed[0]);
    }
  };

  Q.failed = function failed(e) {
    if (e.status !== 401) TW.say($("#queue-status"), `Could not load the queue: ${e.message}`, true);
  };

  Q.reset = function reset() {
    Q.alerts = new Map();
    Q.rows = new Map();
    Q.order = [];
    Q.loaded = false;
    TW.clear($("#queue-body"));
  };

  /** Every second: the ages. */
  Q.tick = function tick() {
    if (!TW.session || $("#queue-view").hidden) return;
    const now = TW.now();
    for (const tr of $("#queue-body").children) {
      const a = Q.alerts.get(tr.dataset.id);
      const td = tr.querySelector(".c-age");
      if (a && td) td.textContent = TW.duration(now - a.opened_t);
    }
  };

  function onFilter() {
    Q.filters = {
      state: $("#f-state").value,
      kind: $("#f-kind").value,
      team: $("#f-team").value,
      subject: $("#f-subject").value.trim(),
    };
    Q.render();
  }

  TW.views.queue = {
    get visible() {
      return !$("#queue-view").hidden;
    },
    show() {
      $("#queue-view").hidden = false;
      document.title = "Queue · tagwatch";
      if (Q.loaded) Q.render();
    },
    hide() {
      $("#queue-view").hidden = true;
    },
  };

  document.addEventListener("DOMContentLoaded", () => {
    for (const id of ["#f-state", "#f-kind", "#f-team"]) $(id).addEventListener("change", onFilter);
    $("#f-subject").addEventListener("input", onFilter);
  });
})();

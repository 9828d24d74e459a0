/* tagwatch monitor console: what supervisors review (supervisors and admins only).
 *
 * Access log (#/access): GET /api/access?limit=N[&flagged=1], newest first: who looked at
 * whom, when, from where and why. "Flagged only" keeps the views of another team's
 * subject (view_other_team). A supervisor's stream announces each such view at once
 * (event: access); while this page is open it then reloads by itself.
 * Reports (#/reports): GET /api/reports/outcomes — per subject and zone the alerts, how
 * they were resolved, the false alarm rate and the median time to acknowledge; sortable
 * by any column (click its heading), refreshed as alerts change.
 * A monitor is told the pages are not allowed (and the API answers 403). */
"use strict";

(function () {
  const { h, $ } = TW;
  const enc = encodeURIComponent;
  const OUTCOMES = ["breach", "false_alarm", "device_fault", "other"];

  const allowed = () => !!TW.session && ["supervisor", "admin"].includes(TW.session.role);

  /** Show "Not allowed" in a page's status line; the page's table stays hidden. */
  function refuse(status, table, what) {
    table.hidden = true;
    TW.say(status, `Not allowed: ${what} is for supervisors.`, true);
    status.dataset.denied = "1";
  }

  /** A view that reloads (at most every 300 ms) when `reload()` is asked while visible. */
  function page(id, load) {
    const view = {
      seq: 0,
      timer: null,
      get visible() {
        return !$(`#${id}`).hidden;
      },
      show() {
        $(`#${id}`).hidden = false;
        view.reload(0);
      },
      hide() {
        $(`#${id}`).hidden = true;
        view.seq++;
        clearTimeout(view.timer);
      },
      reload(delay) {
        clearTimeout(view.timer);
        view.timer = setTimeout(() => load(++view.seq, view), delay === undefined ? 300 : delay);
      },
    };
    return view;
  }

  /* ---- the access log -------------------------------------------------------------------- */

  const ACTIONS = { view_other_team: "viewed another team's", view_alert: "viewed alert", view_subject: "viewed subject" };

  function actionText(r) {
    if (r.action === "view_other_team") return `another team's ${r.view === "view_subject" ? "subject" : "alert"}`;
    return ACTIONS[r.action] || TW.label(r.action);
  }

  function accessRow(r) {
    const flagged = r.action === "view_other_team";
    const link = (kind, id) => (id ? h("a", { href: `#/${kind}/${enc(id)}`, text: id }) : "—");
    return h(
      flagged ? "tr.flagged" : "tr",
      { testid: "access-row", dataset: { action: r.action, seq: String(r.seq) } },
      h("td", { testid: "access-time", title: new Date(r.t * 1000).toISOString(), text: TW.clock(r.t) }),
      h("td", { testid: "access-user", text: r.user }),
      h("td", { testid: "access-action" },
        flagged ? h("span.flag", { testid: "access-flag", title: "a view of another team's subject", text: "flagged" }) : null,
        flagged ? " " : null, actionText(r)),
      h("td", { testid: "access-subject" }, r.subject ? link("subject", r.subject) : "—"),
      h("td", { testid: "access-team", text: r.team || "—" }),
      h("td", { testid: "access-alert" }, link("alert", r.alert)),
      h("td", { testid: "access-reason" }, r.reason ? r.reason : h("span.muted", { text: r.detail || "—" })),
      h("td", { testid: "access-client", text: r.client || "—" }),
    );
  }

  async function loadAccess(seq, view) {
    const status = $("#access-status");
    const table = $("#access-table");
    if (!allowed()) return refuse(status, table, "the access log");
    const flagged = $("#access-flagged").checked;
    const limit = Number($("#access-limit").value) || 200;
    const path = `/api/access?limit=${limit}${flagged ? "&flagged=1" : ""}`;
    try {
      const rows = (await TW.get(path)).sort((a, b) => b.seq - a.seq).slice(0, limit); // newest first
      if (seq !== view.seq) return;
      TW.clear($("#access-body")).append(
        ...(rows.length ? rows.map(accessRow) : [h("tr", {}, h("td.muted", { colSpan: 8, text: flagged ? "No views of another team's subject." : "Nothing logged." }))]),
      );
      const n = rows.filter((r) => r.action === "view_other_team").length;
      delete status.dataset.denied;
      TW.say(status, `${rows.length} row${rows.length === 1 ? "" : "s"}, ${n} flagged · updated ${TW.clock(TW.now())}`);
      table.hidden = false;
      table.dataset.loads = String(Number(table.dataset.loads || 0) + 1);
    } catch (e) {
      if (seq !== view.seq) return;
      if (e.status === 403) refuse(status, table, "the access log");
      else if (e.status !== 401) TW.say(status, `Could not load the access log: ${e.message}`, true);
    }
  }

  const access = (TW.views.access = page("access-view", loadAccess));
  access.onAccess = () => access.reload(); // a view of another team's subject: show it now
  const showAccess = access.show;
  access.show = () => {
    document.title = "Access log · tagwatch";
    showAccess();
  };

  /* ---- reports: outcomes per subject and zone ----------------------------------------------- */

  const R = { rows: [], key: "false_alarm_rate", desc: true };

  const COLUMNS = [
    ["subject", "Subject", (r) => r.subject],
    ["zone", "Zone", (r) => r.zone || ""],
    ["alerts", "Alerts", (r) => r.alerts],
    ["resolved", "Resolved", (r) => r.resolved],
    ...OUTCOMES.map((o) => [o, TW.label(o), (r) => (r.outcomes || {})[o] || 0]),
    ["false_alarm_rate", "False alarm rate", (r) => r.false_alarm_rate],
    ["median_time_to_ack_s", "Median time to ack", (r) => r.median_time_to_ack_s],
  ];
  const valueOf = (key) => COLUMNS.find((c) => c[0] === key)[2];

  function minutes(s) {
    if (s === null || s === undefined) return "—";
    const m = s / 60;
    return `${m < 10 ? m.toFixed(1) : Math.round(m)} min`;
  }

  function sorted() {
    const get = valueOf(R.key);
    const dir = R.desc ? -1 : 1;
    return R.rows.slice().sort((a, b) => {
      const x = get(a);
      const y = get(b);
      if ((x === null || x === undefined) !== (y === null || y === undefined)) return x === null || x === undefined ? 1 : -1; // no value: last
      const c = typeof x === "string" ? x.localeCompare(y) : (x ?? 0) - (y ?? 0);
      return dir * c || a.subject.localeCompare(b.subject) || (a.zone || "").localeCompare(b.zone || "");
    });
  }

  function head() {
    TW.clear($("#reports-head")).append(
      ...COLUMNS.map(([key, title]) => {
        const on = key === R.key;
        return h("th", { scope: "col", "aria-sort": on ? (R.desc ? "descending" : "ascending") : "none" },
          h("button.sort", { type: "button", testid: `sort-${key}`, on: { click: () => sortBy(key) } },
            title, on ? (R.desc ? " ▼" : " ▲") : ""));
      }),
    );
  }

  function sortBy(key) {
    if (R.key === key) R.desc = !R.desc;
    else {
      R.key = key;
      R.desc = !["subject", "zone"].includes(key);
    }
    renderReports();
  }

  function renderReports() {
    head();
    const rows = sorted();
    TW.clear($("#reports-body")).append(
      ...(rows.length ? rows.map((r) =>
        h("tr", { testid: "report-row", dataset: { subject: r.subject, zone: r.zone || "" } },
          h("td", { testid: "report-subject" }, h("a", { href: `#/subject/${enc(r.subject)}`, text: r.subject })),
          h("td", { testid: "report-zone", text: r.zone || "—" }),
          h("td.num", { testid: "report-alerts", text: r.alerts }),
          h("td.num", { testid: "report-resolved", text: r.resolved }),
          ...OUTCOMES.map((o) => h("td.num", { testid: `report-${o}`, text: (r.outcomes || {})[o] || 0 })),
          h("td.num", { testid: "report-false-alarm-rate", text: TW.pct(r.false_alarm_rate) }),
          h("td.num", { testid: "report-time-to-ack", title: r.median_time_to_ack_s === null ? "" : `${Math.round(r.median_time_to_ack_s)} s`, text: minutes(r.median_time_to_ack_s) }),
        ),
      ) : [h("tr", {}, h("td.muted", { colSpan: COLUMNS.length, text: "No alerts yet." }))]),
    );
  }

  async function loadReports(seq, view) {
    const status = $("#reports-status");
    const table = $("#reports-table");
    if (!allowed()) return refuse(status, table, "reporting");
    try {
      const rows = await TW.get("/api/reports/outcomes");
      if (seq !== view.seq) return;
      R.rows = rows;
      renderReports();
      const alerts = rows.reduce((n, r) => n + r.alerts, 0);
      delete status.dataset.denied;
      TW.say(status, `${rows.length} subject and zone pair${rows.length === 1 ? "" : "s"}, ${alerts} alert${alerts === 1 ? "" : "s"} · updated ${TW.clock(TW.now())}`);
      table.hidden = false;
    } catch (e) {
      if (seq !== view.seq) return;
      if (e.status === 403) refuse(status, table, "reporting");
      else if (e.status !== 401) TW.say(status, `Could not load the report: ${e.message}`, true);
    }
  }

  const reports = (TW.views.reports = page("reports-view", loadReports));
  reports.onAlert = () => reports.reload(1000); // an action or a decision: counts change
  const showReports = reports.show;
  reports.show = () => {
    document.title = "Reports · tagwatch";
    showReports();
  };

  document.addEventListener("DOMContentLoaded", () => {
    $("#access-flagged").addEventListener("change", () => access.reload(0));
    $("#access-limit").addEventListener("change", () => access.reload(0));
    $("#access-refresh").addEventListener("click", () => access.reload(0));
  });
})();

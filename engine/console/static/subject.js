/* tagwatch monitor console: the subject page (#/subject/ID) and user admin (#/users).
 *
 * Subject: GET /api/subjects/{id} — zones (with schedules) and the recent track on the
 * map, device health, open and past alerts, outcome counts; another team's subject needs
 * a stated reason (403 need_reason), like the alert page.
 * Users: GET /api/users, for admins only; anyone else is told they are not allowed. */
"use strict";

(function () {
  const { h, $ } = TW;
  const enc = encodeURIComponent;
  const S = { id: null, map: null, reasons: new Map(), loading: 0 };

  function kv(el, pairs) {
    TW.clear(el).append(
      ...pairs.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v === null || v === undefined || v === "" ? "—" : String(v) })]),
    );
  }

  /** Device health: one entry per tag ({tag, last_seen_t, battery, ...}). */
  function health(list) {
    const pairs = [];
    for (const x of Array.isArray(list) ? list : list ? [list] : []) {
      const tag = x.tag ? `${x.tag}: ` : "";
      pairs.push([`${tag}last seen`, x.last_seen_t ? `${TW.clock(x.last_seen_t)} (${TW.duration(TW.now() - x.last_seen_t)} ago)` : "never"]);
      if (x.battery !== null && x.battery !== undefined) pairs.push([`${tag}battery`, `${Math.round(x.battery)}%`]);
      for (const [k, v] of Object.entries(x)) {
        if (["tag", "last_seen_t", "battery"].includes(k) || v === null || v === undefined) continue;
        pairs.push([`${tag}${TW.label(k)}`, typeof v === "object" ? JSON.stringify(v) : k.endsWith("_t") ? TW.clock(v) : v]);
      }
    }
    return pairs;
  }

  function schedule(p) {
    const w = p.schedule;
    if (!w || (Array.isArray(w) && !w.length)) return "always";
    return Array.isArray(w) ? w.join("; ") : typeof w === "string" ? w : JSON.stringify(w);
  }

  function render(data) {
    const s = data.subject || {};
    $("#subject-title").textContent = `Subject ${s.name ? `${s.name} (${s.id})` : s.id || S.id}`;
    document.title = `${s.id || S.id} · tagwatch`;
    const devices = [["Team", s.team], ["Risk", s.risk], ["Tags", (s.tags || []).join(", ")]];
    if (s.protected && s.protected.length) devices.push(["Protected devices", s.protected.join(", ")]);
    if (s.valid_from || s.valid_until) devices.push(["Tagged", `${s.valid_from ? TW.clock(s.valid_from) : "…"} to ${s.valid_until ? TW.clock(s.valid_until) : "…"}`]);
    kv($("#subject-health"), [...devices, ...health(data.health)]);
    const features = (data.zones && data.zones.features) || [];
    TW.clear($("#subject-zones")).append(
      ...(features.length ? features.map((f) => {
        const p = f.properties || {};
        return h("li", { testid: "subject-zone" }, h("b", { text: p.name || p.id }), ` · ${p.kind || "exclusion"} · ${schedule(p)}`,
          p.valid_from || p.valid_until ? ` · valid ${p.valid_from || "…"} to ${p.valid_until || "…"}` : "");
      }) : [h("li.muted", { text: "No zones." })]),
    );
    const outcomes = Object.entries(data.outcomes || {});
    kv($("#subject-outcomes"), outcomes.length ? outcomes.map(([k, v]) => [TW.label(k), v]) : [["Resolved alerts", 0]]);
    const alerts = (data.alerts || []).slice().sort(TW.queue.cmp);
    TW.clear($("#subject-alerts")).append(
      ...(alerts.length ? alerts.map((a) =>
        h("tr", { testid: "subject-alert", className: `sev-${a.severity}` },
          h("td", {}, h("span.badge", { text: a.severity })),
          h("td", {}, h("a", { href: `#/alert/${enc(a.id)}`, text: TW.label(a.kind) })),
          h("td", { text: a.zone || "—" }), h("td", { text: TW.clock(a.raised_t) }),
          h("td", { text: a.state }), h("td", { text: a.workflow })),
      ) : [h("tr", {}, h("td.muted", { colSpan: 6, text: "No alerts." }))]),
    );
    $("#subject-body").hidden = false;
    S.map = TW.map.make($("#subject-map"), S.map);
    const zones = features.map((f) => TW.map.zone(S.map, f));
    const track = TW.map.track(S.map, data.track, []);
    TW.map.fit(S.map, [...zones, ...track.layers], null);
    $("#subject-map").dataset.zones = String(zones.filter(Boolean).length);
    $("#subject-map").dataset.track = String(track.count);
    TW.map.legend($("#subject-legend"), [
      ["zone", "zones", zones.filter(Boolean).length, "legend-zones"],
      ["track", "fixes, last 2 h", track.count, "legend-track"],
    ]);
  }

  async function load(id) {
    const seq = ++S.loading;
    TW.say($("#subject-status"), "Loading…");
    $("#subject-reason").hidden = true;
    const reason = S.reasons.get(id) || "";
    try {
      const data = await TW.get(`/api/subjects/${enc(id)}${reason ? `?reason=${enc(reason)}` : ""}`);
      if (seq !== S.loading) return;
      TW.say($("#subject-status"), "");
      render(data);
    } catch (e) {
      if (seq !== S.loading) return;
      $("#subject-body").hidden = true;
      if (e.status === 403 && e.body.need_reason) {
        TW.say($("#subject-status"), e.message, true);
        $("#subject-reason").hidden = false;
        $("#subject-reason-text").focus();
      } else if (e.status !== 401) {
        TW.say($("#subject-status"), `Could not load subject ${id}: ${e.message}`, true);
      }
    }
  }

  TW.views.subject = {
    get visible() {
      return !$("#subject-view").hidden;
    },
    show(id) {
      S.id = id;
      $("#subject-view").hidden = false;
      $("#subject-title").textContent = `Subject ${id}`;
      load(id);
    },
    hide() {
      $("#subject-view").hidden = true;
      S.loading++;
    },
    onAlert(a) {
      if (a.subject === S.id) {
        clearTimeout(S.pending);
        S.pending = setTimeout(() => load(S.id), 500);
      }
    },
  };

  /* ---- users (admins) ------------------------------------------------------------------ */

  function notAllowed() {
    $("#users-table").hidden = true;
    $("#users-howto").hidden = true;
    const el = $("#users-status");
    TW.say(el, "Not allowed: user administration is for admins.", true);
    el.dataset.testid = "not-allowed";
    el.setAttribute("data-testid", "not-allowed");
  }

  async function users() {
    const el = $("#users-status");
    el.setAttribute("data-testid", "users-status");
    $("#users-table").hidden = true;
    if (!TW.session || TW.session.role !== "admin") {
      notAllowed();
      return;
    }
    TW.say(el, "Loading…");
    try {
      const list = await TW.get("/api/users");
      TW.clear($("#users-body")).append(
        ...list.map((u) =>
          h("tr", { testid: "user-row" }, h("td", { text: u.name }), h("td", { text: u.role }),
            h("td", { text: u.team || "—" }), h("td", { text: u.disabled ? "disabled" : "active" })),
        ),
      );
      TW.say(el, `${list.length} account${list.length === 1 ? "" : "s"}`);
      $("#users-table").hidden = false;
      $("#users-howto").hidden = false;
    } catch (e) {
      if (e.status === 403) notAllowed();
      else if (e.status !== 401) TW.say(el, `Could not load the users: ${e.message}`, true);
    }
  }

  TW.views.users = {
    get visible() {
      return !$("#users-view").hidden;
    },
    show() {
      $("#users-view").hidden = false;
      document.title = "Users · tagwatch";
      users();
    },
    hide() {
      $("#users-view").hidden = true;
    },
  };

  document.addEventListener("DOMContentLoaded", () => {
    $("#subject-reason").addEventListener("submit", (ev) => {
      ev.preventDefault();
      S.reasons.set(S.id, $("#subject-reason-text").value.trim());
      load(S.id);
    });
  });
})();

/* tagwatch monitor console: the alert page (#/alert/ID).
 *
 * GET /api/alerts/{id} (with ?reason= once the monitor has stated one for another team's
 * subject): the map (zone, track with accuracy circles, evidence fixes, the deciding
 * fix, the protected device's positions with their age), the decision in words, the
 * workflow buttons, the actions and the lifecycle records. A record or an action for this
 * alert arriving on the event stream reloads the page's data in place. */
"use strict";

(function () {
  const { h, $ } = TW;
  const enc = encodeURIComponent;
  const A = { id: null, data: null, map: null, reasons: new Map(), pending: null, loading: 0 };

  const BAND = (c) => (c >= 0.9 ? "confident" : c >= 0.7 ? "likely" : "possible");
  const KNOWN = new Set([
    "t", "lat", "lon", "acc", "depth_m", "distance_m", "protected_age_s", "route", "from_t",
    "from_lat", "from_lon", "from_acc", "turn_lat", "turn_lon", "clock_offset_s",
    "closed_reason", "valid_until",
  ]);

  /** The decision, in sentences, from the record and its detail. */
  function decision(a, fixes) {
    const d = a.detail || {};
    const zone = a.zone ? `zone ${a.zone}` : "the zone";
    const acc = d.acc !== undefined ? ` (accuracy ±${TW.metres(d.acc)})` : "";
    const out = [
      `${TW.label(a.kind)}, severity ${a.severity}: confidence ${TW.pct(a.confidence)} (${BAND(a.confidence)}).`,
    ];
    if (d.depth_m !== undefined && d.route) {
      const how = d.route === "segment"
        ? `the straight line between them crosses ${zone}, ${TW.metres(d.depth_m)} deep`
        : `a route keeping the heading it came in on could have entered ${zone}, ${TW.metres(d.depth_m)} deep`;
      out.push(
        `Transit: decided on the route from the fix at ${TW.clock(d.from_t)} (±${TW.metres(d.from_acc)}) ` +
          `to the fix at ${TW.clock(d.t)}${acc}, both outside: ${how}.`,
      );
    } else if (d.depth_m !== undefined) {
      const inside = a.kind === "curfew_breach" ? `outside the curfew ${zone}` : `inside ${zone}`;
      out.push(
        d.depth_m >= 0
          ? `The deciding fix at ${TW.clock(d.t)} was ${TW.metres(d.depth_m)} ${inside}${acc}.`
          : `The deciding fix at ${TW.clock(d.t)} was ${TW.metres(-d.depth_m)} short of the edge${acc}: evidence accumulated over several fixes decided.`,
      );
      if (d.acc !== undefined) {
        out.push(
          Math.abs(d.depth_m) > d.acc
            ? "Deeper than the fix's accuracy: even at the edge of its error it is on that side."
            : "Within the fix's accuracy of the edge: the confidence reflects that.",
        );
      }
    } else if (d.distance_m !== undefined) {
      const what = a.kind.startsWith("proximity")
        ? `from the protected device${d.protected_age_s !== undefined ? ` (its position ${TW.duration(d.protected_age_s)} old)` : ""}`
        : `outside ${zone}`;
      out.push(`The deciding fix at ${TW.clock(d.t)} was ${TW.metres(d.distance_m)} ${what}${acc}.`);
    }
    if (d.t !== undefined && a.raised_t > d.t + 1) {
      out.push(`Decided at ${TW.clock(a.raised_t)}, after the fix: the decision waited for confirming evidence.`);
    }
    out.push(
      `Opened ${TW.clock(a.opened_t)}, raised ${TW.clock(a.raised_t)}` +
        (a.closed_t ? `, closed ${TW.clock(a.closed_t)} (${TW.duration(a.closed_t - a.opened_t)}).` : "; still open."),
    );
    const ev = (a.evidence || []).map((e) => `${e[0]} #${e[1]}${e.length > 2 ? ` (boot ${e[2]})` : ""}`);
    if (ev.length) out.push(`Evidence: ${ev.length} fix${ev.length > 1 ? "es" : ""} (${ev.join(", ")})${fixes && fixes.length !== ev.length ? `, ${fixes.length} on the map` : ""}.`);
    if (d.clock_offset_s !== undefined) out.push(`The tag's clock was ${TW.duration(d.clock_offset_s)} off: times are the tag's own.`);
    if (d.closed_reason) out.push(`Closed because: ${TW.label(d.closed_reason)}.`);
    const extra = Object.entries(d).filter(([k]) => !KNOWN.has(k));
    if (extra.length) out.push(extra.map(([k, v]) => `${TW.label(k)}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("; "));
    return out;
  }

  function actionText(x) {
    const parts = [TW.clock(x.t), x.user, { ack: "acknowledged", note: "noted", assign: "assigned", resolve: "resolved", reopen: "reopened" }[x.action] || x.action];
    if (x.to) parts.push(`to ${x.to}`);
    if (x.outcome) parts.push(`as ${TW.label(x.outcome)}`);
    return parts.join(" · ") + (x.text ? `: “${x.text}”` : "");
  }

  function renderHead(a) {
    $("#alert-title").textContent = `${TW.label(a.kind)} · ${a.subject}${a.zone ? " · " + a.zone : ""}`;
    document.title = `${TW.label(a.kind)} ${a.subject} · tagwatch`;
    TW.clear($("#alert-badges")).append(
      ...[
      h(`span.badge.sev-${a.severity}`, { testid: "alert-severity", text: a.severity }),
      h("span.tag", { testid: "alert-state", text: a.state }),
      h("a.tag", { href: `#/subject/${enc(a.subject)}`, text: `subject ${a.subject}` }),
      a.team ? h("span.tag", { text: `team ${a.team}` }) : null,
      a.risk ? h("span.tag", { text: `risk ${a.risk}` }) : null,
      a.assigned ? h("span.tag", { testid: "alert-assigned", text: `assigned ${a.assigned}` }) : null,
      ].filter(Boolean),
    );
    $("#alert-workflow").textContent = a.workflow;
    const resolved = a.workflow === "resolved";
    const boss = TW.session && (TW.session.role === "supervisor" || TW.session.role === "admin");
    $("#act-ack").disabled = a.workflow !== "new";
    $("#act-reopen").hidden = !(boss && resolved);
    for (const el of TW.$$("#form-resolve select, #form-resolve input, #form-resolve button")) el.disabled = resolved;
  }

  function render(data) {
    const a = data.alert;
    A.data = data;
    renderHead(a);
    const reason = A.reasons.get(a.subject);
    $("#alert-export").href = `/api/alerts/${enc(a.id)}/export${reason ? `?reason=${enc(reason)}` : ""}`;
    $("#alert-export").setAttribute("download", `tagwatch-alert-${a.id}.zip`);
    $("#alert-export").hidden = false;
    TW.clear($("#alert-decision")).append(...decision(a, data.fixes).map((s) => h("li", { text: s })));
    const actions = data.actions || a.actions || [];
    TW.clear($("#alert-actions")).append(
      ...(actions.length ? actions.map((x) => h("li", { testid: "action", dataset: { action: x.action }, text: actionText(x) }))
        : [h("li.muted", { text: "No action yet." })]),
    );
    TW.clear($("#alert-records")).append(
      ...(data.records || []).map((r) =>
        h("tr", { testid: "record" },
          h("td", { text: TW.clock(r.raised_t) }), h("td", { text: r.state }),
          h("td", { text: TW.pct(r.confidence) }), h("td", { text: r.severity }),
          h("td", { text: TW.where(r) || "—" })),
      ),
    );
    $("#alert-body").hidden = false;
    drawMap(data);
  }

  function drawMap(data) {
    const a = data.alert;
    const el = $("#alert-map");
    const view = A.map && A.map.getCenter ? [A.map.getCenter(), A.map.getZoom()] : null;
    const same = A.map && A.mapFor === a.id;
    A.map = TW.map.make(el, A.map);
    A.mapFor = a.id;
    const zone = data.zone ? TW.map.zone(A.map, data.zone) : null;
    const track = TW.map.track(A.map, data.track, data.fixes);
    const decided = TW.map.decided(A.map, a.detail);
    const victim = TW.map.victim(A.map, data.victim);
    const d = a.detail || {};
    if (same && view) A.map.setView(view[0], view[1], { animate: false }); // a live reload keeps the view
    else TW.map.fit(A.map, [zone, ...track.layers, ...decided, ...victim], d.lat !== undefined ? [d.lat, d.lon] : null);
    el.dataset.zone = zone ? "1" : "0";
    el.dataset.track = String(track.count);
    el.dataset.evidence = String(track.evidence);
    el.dataset.victim = String((data.victim || []).length);
    TW.map.legend($("#alert-legend"), [
      ["zone", "zone", zone ? 1 : 0, "legend-zone"],
      ["track", "track fixes", track.count, "legend-track"],
      ["evidence", "evidence fixes", track.evidence, "legend-evidence"],
      ["victim", "protected device positions", (data.victim || []).length, "legend-victim"],
    ]);
  }

  async function load(id, quiet) {
    const seq = ++A.loading;
    if (!quiet) TW.say($("#alert-status"), "Loading…");
    $("#alert-reason").hidden = true;
    const known = TW.queue.alerts.get(id);
    const reason = known ? A.reasons.get(known.subject) : A.reasons.get(`alert:${id}`);
    let data;
    try {
      data = await TW.get(`/api/alerts/${enc(id)}${reason ? `?reason=${enc(reason)}` : ""}`);
    } catch (e) {
      if (seq !== A.loading || A.id !== id) return;
      if (e.status === 403 && e.body.need_reason) {
        $("#alert-body").hidden = true;
        TW.say($("#alert-status"), "");
        $("#alert-reason-why").textContent = `${e.message}. Opening it is logged and a supervisor is told.`;
        $("#alert-reason").hidden = false;
        $("#alert-reason-text").focus();
      } else if (e.status !== 401) {
        TW.say($("#alert-status"), e.status === 404 ? `No alert ${id}: ${e.message}` : `Could not load the alert: ${e.message}`, true);
      }
      return;
    }
    if (seq !== A.loading || A.id !== id) return; // the user has moved on
    TW.say($("#alert-status"), "");
    render(data);
  }

  async function act(path, body, done) {
    const status = $("#alert-act-status");
    TW.say(status, "Sending…");
    for (const b of TW.$$("#alert-view .work button")) b.disabled = true;
    try {
      const a = await TW.post(`/api/alerts/${enc(A.id)}/${path}`, body);
      if (a && a.id) TW.queue.upsert(a, false);
      TW.say(status, "Done.");
      if (done) done();
    } catch (e) {
      const why = e.status === 409 ? `Not possible now: ${e.message}` : e.status === 403 && e.body.need_reason
        ? `${e.message} (state a reason: reload the page)` : e.message;
      if (e.status !== 401) TW.say(status, why, true);
    } finally {
      for (const b of TW.$$("#alert-view .work button")) b.disabled = false;
      if (A.data) renderHead(TW.queue.alerts.get(A.id) || A.data.alert);
    }
    await load(A.id, true);
  }

  TW.views.alert = {
    get visible() {
      return !$("#alert-view").hidden;
    },
    show(id) {
      const moved = A.id !== id;
      A.id = id;
      $("#alert-view").hidden = false;
      if (moved) {
        $("#alert-body").hidden = true;
        TW.clear($("#alert-badges"));
        $("#alert-export").hidden = true;
        TW.say($("#alert-act-status"), "");
        $("#assign-to").value = (TW.session && TW.session.user) || "";
        $("#note-text").value = "";
        $("#resolve-note").value = "";
      }
      $("#alert-title").textContent = `Alert ${id}`;
      load(id, !moved);
      $("#alert-title").focus({ preventScroll: true });
    },
    hide() {
      $("#alert-view").hidden = true;
      A.loading++;
    },
    onAlert(a) {
      if (a.id !== A.id) return;
      if (A.data) renderHead(a);
      clearTimeout(A.pending);
      A.pending = setTimeout(() => load(A.id, true), 150); // records and actions
    },
  };

  document.addEventListener("DOMContentLoaded", () => {
    $("#alert-title").tabIndex = -1;
    $("#act-ack").addEventListener("click", () => act("ack", {}));
    $("#act-reopen").addEventListener("click", () => act("reopen", {}));
    $("#form-note").addEventListener("submit", (ev) => {
      ev.preventDefault();
      act("note", { text: $("#note-text").value }, () => ($("#note-text").value = ""));
    });
    $("#form-assign").addEventListener("submit", (ev) => {
      ev.preventDefault();
      act("assign", { to: $("#assign-to").value.trim() });
    });
    $("#form-resolve").addEventListener("submit", (ev) => {
      ev.preventDefault();
      act("resolve", { outcome: $("#resolve-outcome").value, note: $("#resolve-note").value },
        () => ($("#resolve-note").value = ""));
    });
    $("#alert-reason").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const known = TW.queue.alerts.get(A.id);
      A.reasons.set(known ? known.subject : `alert:${A.id}`, $("#alert-reason-text").value.trim());
      load(A.id);
    });
  });
})();

/* tagwatch monitor console: the core. Plain JS, no build step, no framework.
 *
 * TW.api: fetch with the session cookie and X-CSRF-Token on every POST; a 401 shows the
 * login form. TW.live: the server-sent event stream (/api/events) with reconnect and a
 * catch-up fetch of /api/alerts after every reconnect. TW.route: the hash router
 * (#/ queue, #/alert/ID, #/subject/ID, #/users, #/access, #/reports). TW.cue: the critical banner and beep.
 * Everything shown is built with DOM calls and textContent: data never becomes markup. */
"use strict";

const TW = (window.TW = {
  session: null, // {user, role, team, csrf, via, tiles?}
  views: {}, // name -> {show(arg), hide()}
});

/* ---- DOM and formatting helpers ---------------------------------------------------- */

TW.$ = (sel, root) => (root || document).querySelector(sel);
TW.$$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

/** h("tag.class#id", {attr: value, on: {click: fn}, dataset: {...}}, ...children) */
TW.h = function h(spec, attrs, ...children) {
  const m = /^([a-z0-9]+)((?:[.#][\w-]+)*)$/i.exec(spec);
  const el = document.createElement(m ? m[1] : spec);
  if (m && m[2]) {
    for (const part of m[2].match(/[.#][\w-]+/g)) {
      if (part[0] === ".") el.classList.add(part.slice(1));
      else el.id = part.slice(1);
    }
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else if (k === "testid") el.setAttribute("data-testid", v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
};

TW.clear = (el) => {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
};

TW.now = () => Date.now() / 1000;

const pad = (n) => String(n).padStart(2, "0");

/** "14:03:07" today, else "2026-12-03 14:03" (local time). */
TW.clock = function clock(t) {
  if (t === null || t === undefined) return "—";
  const d = new Date(t * 1000);
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (new Date().toDateString() === d.toDateString()) return hms;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms.slice(0, 5)}`;
};

/** A duration in seconds as "42 s", "7 min", "3 h 05", "2 d 4 h". */
TW.duration = function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "—";
  const sign = s < 0 ? "-" : "";
  s = Math.abs(s);
  if (s < 90) return `${sign}${Math.round(s)} s`;
  if (s < 3600) return `${sign}${Math.round(s / 60)} min`;
  if (s < 86400) return `${sign}${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))}`;
  return `${sign}${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
};

TW.metres = (m) => (m === null || m === undefined ? "—" : `${Math.round(m)} m`);
TW.pct = (c) => (c === null || c === undefined ? "—" : `${Math.round(c * 100)}%`);
TW.label = (s) => (s ? String(s).replace(/_/g, " ") : "—");

/** Where an alert happened, in a few words, from its detail. */
TW.where = function where(a) {
  const d = a.detail || {};
  if (d.depth_m !== undefined) {
    const how = d.route ? ` (${d.route})` : "";
    return d.depth_m >= 0 ? `${TW.metres(d.depth_m)} in${how}` : `${TW.metres(-d.depth_m)} out${how}`;
  }
  if (d.distance_m !== undefined) return `${TW.metres(d.distance_m)} away`;
  if (d.last_lat !== undefined && d.distance_m !== undefined) return `${TW.metres(d.distance_m)}`;
  return "";
};

/* ---- the API ------------------------------------------------------------------------ */

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}
TW.ApiError = ApiError;

TW.api = async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET" && method !== "HEAD") {
    opts.headers["X-CSRF-Token"] = (TW.session && TW.session.csrf) || "";
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
  }
  let r;
  try {
    r = await fetch(path, opts);
  } catch (e) {
    throw new ApiError(0, { error: `the engine cannot be reached (${e.message})` });
  }
  let data = null;
  if ((r.headers.get("content-type") || "").includes("json")) {
    try {
      data = await r.json();
    } catch (e) {
      data = null;
    }
  }
  if (r.status === 401 && path !== "/api/login") {
    TW.loggedOut(TW.session ? "Your session has ended: log in again." : "");
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
};

TW.get = (path) => TW.api("GET", path);
TW.post = (path, body) => TW.api("POST", path, body === undefined ? {} : body);

/** Show an error (or a message) in a status element. */
TW.say = function say(el, text, bad) {
  el.textContent = text || "";
  el.classList.toggle("bad", !!bad);
};

/* ---- session: login, logout --------------------------------------------------------- */

TW.loggedIn = function loggedIn(session) {
  TW.session = session;
  TW.$("#login-view").hidden = true;
  TW.$("#topbar").hidden = false;
  TW.$("#who").textContent = `${session.user} · ${session.role}${session.team ? " · " + session.team : ""}`;
  TW.$("#nav-users").hidden = session.role !== "admin";
  for (const a of TW.$$("[data-supervisor]")) a.hidden = !["supervisor", "admin"].includes(session.role);
  TW.queue.load().catch((e) => TW.queue.failed(e));
  TW.live.start();
  TW.route();
};

TW.loggedOut = function loggedOut(message) {
  TW.session = null;
  TW.live.stop();
  TW.queue.reset();
  for (const v of Object.values(TW.views)) v.hide();
  TW.$("#topbar").hidden = true;
  TW.cue.reset();
  TW.clear(TW.$("#notices"));
  TW.$("#login-view").hidden = false;
  TW.say(TW.$("#login-error"), message || "", !!message);
  const pw = TW.$("#login-password");
  pw.value = "";
  (TW.$("#login-user").value ? pw : TW.$("#login-user")).focus();
};

async function submitLogin(ev) {
  ev.preventDefault();
  TW.cue.unlock(); // a click: the browser lets the beep play from now on
  const err = TW.$("#login-error");
  const button = TW.$("#login-submit");
  button.disabled = true;
  TW.say(err, "");
  try {
    const who = await TW.api("POST", "/api/login", {
      username: TW.$("#login-user").value,
      password: TW.$("#login-password").value,
    });
    TW.$("#login-password").value = "";
    let session = { ...who, via: "session" };
    try {
      session = await TW.get("/api/session"); // may carry more (tiles)
    } catch (e) {
      /* the login answer is enough */
    }
    TW.loggedIn(session);
  } catch (e) {
    const msg = e.status === 401 ? "Wrong user name or password." : e.message;
    TW.say(err, msg, true);
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try {
    await TW.post("/api/logout");
  } catch (e) {
    /* already gone: show the login form all the same */
  }
  location.hash = "#/";
  TW.loggedOut("");
  TW.say(TW.$("#login-error"), "You have logged out.", false);
}

/* ---- the hash router ------------------------------------------------------------------ */

TW.route = function route() {
  if (!TW.session) return;
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, ...rest] = hash.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  const name = { "": "queue", alert: "alert", subject: "subject", users: "users", access: "access", reports: "reports" }[page] || "queue";
  for (const [n, v] of Object.entries(TW.views)) if (n !== name) v.hide();
  for (const a of TW.$$("#topbar nav a")) {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  TW.views[name].show(arg);
};

/* ---- live updates: server-sent events --------------------------------------------------- */

TW.live = {
  es: null,
  retry: null,
  broken: false,
  delay: 1000,
  start() {
    this.stop();
    this.connect();
  },
  stop() {
    if (this.es) this.es.close();
    this.es = null;
    clearTimeout(this.retry);
    this.retry = null;
  },
  status(state, text) {
    const el = TW.$("#live");
    el.dataset.state = state;
    el.textContent = text;
  },
  connect() {
    const es = (this.es = new EventSource("/api/events"));
    this.status("connecting", "connecting…");
    es.addEventListener("open", () => {
      this.status("live", "live");
      this.delay = 1000;
      if (this.broken) {
        this.broken = false;
        TW.queue.load().catch((e) => TW.queue.failed(e)); // catch up on what was missed
      }
    });
    es.addEventListener("alert", (ev) => {
      let a;
      try {
        a = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      TW.queue.upsert(a, true);
      for (const v of Object.values(TW.views)) if (v.visible && v.onAlert) v.onAlert(a);
    });
    es.addEventListener("access", (ev) => {
      try {
        TW.notice(JSON.parse(ev.data));
      } catch (e) {
        return; /* not for us */
      }
      for (const v of Object.values(TW.views)) if (v.visible && v.onAccess) v.onAccess();
    });
    es.addEventListener("error", () => {
      this.broken = true;
      if (es.readyState !== EventSource.CLOSED) {
        this.status("down", "reconnecting…"); // the browser retries by itself
        return;
      }
      // the server refused the stream (401, 404, 5xx): find out why, then try again
      es.close();
      this.status("down", "offline — retrying");
      this.retry = setTimeout(() => this.recheck(), this.delay);
      this.delay = Math.min(this.delay * 2, 30000);
    });
  },
  async recheck() {
    if (!TW.session) return;
    try {
      await TW.get("/api/session");
    } catch (e) {
      if (e.status === 401) return; // the login form is up
    }
    if (TW.session) this.connect();
  },
};

/* ---- access notices (supervisors): a view of another team's subject ------------------- */

TW.notice = function notice(x) {
  const list = TW.$("#notices");
  const what = x.view === "view_alert" ? `an alert of ${x.subject}` : `subject ${x.subject}`;
  const item = TW.h(
    "li",
    { testid: "access-notice" },
    `${TW.clock(TW.now())} ${x.user} opened ${what}${x.team ? ` (team ${x.team})` : ""}`,
    x.reason ? `: “${x.reason}”` : "",
    " ",
    x.alert ? TW.h("a", { href: `#/alert/${encodeURIComponent(x.alert)}`, text: "open" }) : null,
    TW.h("button", { type: "button", "aria-label": "Dismiss", text: "×", on: { click: () => item.remove() } }),
  );
  list.prepend(item);
  while (list.childElementCount > 5) list.lastElementChild.remove();
};

/* ---- the critical cue: a flashing banner and a beep ------------------------------------ */

TW.cue = {
  audio: null,
  unlock() {
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (Ctx && !this.audio) this.audio = new Ctx();
      if (this.audio && this.audio.state === "suspended") this.audio.resume();
    } catch (e) {
      this.audio = null;
    }
  },
  beep() {
    if (!this.audio) return;
    const ctx = this.audio;
    for (const [i, f] of [880, 660, 880].entries()) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      const t = ctx.currentTime + i * 0.22;
      osc.frequency.value = f;
      osc.type = "square";
      gain.gain.setValueAtTime(0.0001, t);
      gain.gain.exponentialRampToValueAtTime(0.2, t + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.18);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t);
      osc.stop(t + 0.2);
    }
    TW.cue.beeps = (TW.cue.beeps || 0) + 1;
    document.body.dataset.beeps = String(TW.cue.beeps);
  },
  /** A new critical has arrived: flash, beep, and say which. */
  alarm(a) {
    const banner = TW.$("#critical-banner");
    banner.classList.remove("flash");
    void banner.offsetWidth; // restart the animation
    banner.classList.add("flash");
    TW.$("#critical-latest").textContent =
      `New: ${TW.label(a.kind)} · ${a.subject}${a.zone ? " · " + a.zone : ""} · ${TW.clock(a.raised_t)}`;
    TW.$("#critical-open").href = `#/alert/${encodeURIComponent(a.id)}`;
    this.beep();
  },
  /** Show the banner while any critical alert is unacknowledged. */
  update(count) {
    const banner = TW.$("#critical-banner");
    banner.hidden = count === 0 || !TW.session;
    TW.$("#critical-count").textContent =
      `${count} critical alert${count === 1 ? "" : "s"} not acknowledged`;
    if (count === 0) banner.classList.remove("flash");
  },
  reset() {
    TW.$("#critical-banner").hidden = true;
    TW.$("#critical-banner").classList.remove("flash");
  },
};

/* ---- start -------------------------------------------------------------------------------- */

TW.boot = async function boot() {
  TW.$("#login-form").addEventListener("submit", submitLogin);
  TW.$("#logout").addEventListener("click", logout);
  TW.$("#critical-silence").addEventListener("click", () =>
    TW.$("#critical-banner").classList.remove("flash"),
  );
  document.addEventListener("click", () => TW.cue.unlock(), { once: true });
  window.addEventListener("hashchange", TW.route);
  setInterval(() => TW.queue.tick(), 1000);
  try {
    TW.loggedIn(await TW.get("/api/session"));
  } catch (e) {
    if (e.status !== 401) TW.loggedOut(e.message);
  }
};

document.addEventListener("DOMContentLoaded", () => TW.boot());

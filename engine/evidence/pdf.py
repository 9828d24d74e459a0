"""The pack's PDF (reportlab, standard fonts, no network): page 1 the alert, the decision
in words and the map; then the evidence fixes with their ledger rows and hashes, the
lifecycle records, the track's extent, the zone's source, the ledger position and the
checkpoint with its signature, and how to check them.

Deterministic: invariant mode (a fixed document id), uncompressed (text can be searched
with grep), and the creation date is the alert's last time, not the time of the export:
the same store and alert give the same bytes."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from engine.evidence.mapdraw import draw_map
from engine.evidence.pack import Evidence, utc

MARGIN = 42.0
WIDTH, HEIGHT = A4


def _num(v: Any, nd: int = 1) -> str:
    return "-" if v is None else f"{float(v):.{nd}f}"


def reasons(ev: Evidence) -> list[str]:
    """The decision in words, from the latest record and its detail."""
    rec = ev.latest
    d = rec.get("detail") or {}
    kind, zone = rec.get("kind"), rec.get("zone")
    zkind = ((ev.zone or {}).get("properties") or {}).get("kind", "")
    out = [
        f"{kind} of subject {rec.get('subject')} (tag {rec.get('tag')})"
        + (f", zone {zone}" + (f" ({zkind})" if zkind else "") if zone else "")
        + f": {rec.get('state')}, severity {rec.get('severity')},"
        f" confidence {_num(rec.get('confidence'), 3)}.",
    ]
    if "lat" in d:
        out.append(
            f"Decided on the fix at {utc(d.get('t'))}: lat {_num(d['lat'], 6)},"
            f" lon {_num(d['lon'], 6)}, accuracy {_num(d.get('acc'))} m."
        )
    if "depth_m" in d:
        where = "outside the curfew zone" if kind == "curfew_breach" else "inside the zone"
        out.append(f"Depth: {_num(d['depth_m'])} m {where} (depth_m {d['depth_m']}).")
    if "distance_m" in d:
        out.append(f"Distance: {_num(d['distance_m'])} m (distance_m {d['distance_m']}).")
    if "protected_age_s" in d:
        out.append(f"The protected device's position was {_num(d['protected_age_s'])} s old.")
    if "route" in d:
        out.append(
            f"Decided on the route ({d['route']}) from the fix at {utc(d.get('from_t'))}"
            f" (lat {_num(d.get('from_lat'), 6)}, lon {_num(d.get('from_lon'), 6)},"
            f" accuracy {_num(d.get('from_acc'))} m) to the fix above"
            + (
                f", keeping its heading to lat {_num(d['turn_lat'], 6)}, lon"
                f" {_num(d.get('turn_lon'), 6)} and turning there: a route that could"
                " have entered the zone though neither fix is inside."
                if "turn_lat" in d
                else ": the line between them crosses the zone though neither fix is inside."
            )
        )
    if "clock_offset_s" in d:
        out.append(f"The tag's clock was {d['clock_offset_s']} s off while this was decided.")
    out.append(
        f"Opened {utc(rec.get('opened_t'))}, last raised {utc(rec.get('raised_t'))},"
        f" closed {utc(rec.get('closed_t'))}; {len(ev.records)} lifecycle record(s),"
        f" {len(ev.cited)} piece(s) of evidence cited."
    )
    extra = {k: v for k, v in d.items() if k not in _SAID}
    if extra:
        out.append("Other detail: " + ", ".join(f"{k} {v}" for k, v in sorted(extra.items())))
    return out + ev.notes


_SAID = {"t", "lat", "lon", "acc", "depth_m", "distance_m", "protected_age_s", "route",
         "from_t", "from_lat", "from_lon", "from_acc", "clock_offset_s", "turn_lat",
         "turn_lon"}  # fmt: skip


class _Writer:
    """Lines down the page, a new page when full; every page footed with the alert id."""

    def __init__(self, c: Canvas, alert_id: str) -> None:
        self.c, self.alert_id, self.page = c, alert_id, 1
        self.y = HEIGHT - MARGIN

    def _foot(self) -> None:
        self.c.setFont("Helvetica", 7)
        self.c.drawString(MARGIN, 22, f"tagwatch evidence pack, alert {self.alert_id}")
        self.c.drawRightString(WIDTH - MARGIN, 22, f"page {self.page}")

    def need(self, h: float) -> None:
        if self.y - h < MARGIN:
            self.new_page()

    def new_page(self) -> None:
        self._foot()
        self.c.showPage()
        self.page += 1
        self.y = HEIGHT - MARGIN

    def text(self, s: str, font: str = "Helvetica", size: float = 9, indent: float = 0) -> None:
        width = WIDTH - 2 * MARGIN - indent
        for line in _wrap(self.c, s, font, size, width):
            self.need(size * 1.35)
            self.c.setFont(font, size)
            self.c.drawString(MARGIN + indent, self.y - size, line)
            self.y -= size * 1.35

    def heading(self, s: str) -> None:
        self.need(40)
        self.y -= 6
        self.text(s, "Helvetica-Bold", 11)
        self.y -= 2

    def finish(self) -> None:
        self._foot()
        self.c.showPage()


def _wrap(c: Canvas, s: str, font: str, size: float, width: float) -> list[str]:
    out: list[str] = []
    for para in s.split("\n"):
        line = ""
        for word in para.split(" "):
            cand = f"{line} {word}" if line else word
            if c.stringWidth(cand, font, size) <= width or not line:
                line = cand
            else:
                out.append(line)
                line = word
        while c.stringWidth(line, font, size) > width and len(line) > 1:  # a long hash
            cut = max(1, int(len(line) * width / c.stringWidth(line, font, size)) - 1)
            out.append(line[:cut])
            line = line[cut:]
        out.append(line)
    return out


def _fixes(w: _Writer, ev: Evidence) -> None:
    w.heading("Evidence cited by the alert")
    w.text("tag  seq  boot  time (UTC)  lat  lon  acc m  ledger row  row hash", "Courier-Bold", 6.2)
    for cv in ev.cited:
        tag, seq = cv.ref[0], cv.ref[1]
        boot = cv.ref[2] if len(cv.ref) > 2 else "-"
        if cv.row is None:
            w.text(f"{tag}  {seq}  {boot}  not in the ledger", "Courier", 6.2)
            continue
        f = cv.fix
        if f is None:
            what = "protected device: position withheld" if cv.withheld else cv.row.kind
            w.text(
                f"{tag}  {seq}  {boot}  {what}  row {cv.row.place}  {cv.row.hash.hex()}",
                "Courier",
                6.2,
            )
            continue
        w.text(
            f"{tag}  {seq}  {boot}  {utc(f.t)}  {f.lat:.6f}  {f.lon:.6f}  {f.acc:.1f}"
            f"  row {cv.row.place}  {cv.row.hash.hex()}",
            "Courier",
            6.2,
        )
    n_ev = sum(1 for f in ev.track if f.evidence)
    w.heading("Track")
    w.text(
        f"{len(ev.track)} fixes of tag {ev.latest.get('tag')} in the ledger from"
        f" {utc(ev.window[0])} to {utc(ev.window[1])} ({n_ev} of them cited as evidence);"
        " each with its ledger row and hash in the pack's GeoJSON and manifest."
    )


def _ledger(w: _Writer, ev: Evidence) -> None:
    w.heading("Lifecycle records (ledger alert rows)")
    for r, rec in ev.records:
        w.text(
            f"row {r.n}: {rec.get('state')} raised {utc(rec.get('raised_t'))} confidence"
            f" {_num(rec.get('confidence'), 3)}  hash {r.hash.hex()}",
            "Courier",
            6.2,
        )
    w.heading("Zone")
    w.text(ev.zone_source)
    w.heading("Ledger position and checkpoint")
    cp = ev.checkpoint
    first, last = ev.records[0][0].n, ev.records[-1][0].n
    w.text(
        f"The alert's records are ledger rows {first} to {last} of a chain whose head is row"
        f" {ev.head.n} (hash {ev.head.hash.hex()})."
    )
    covered = "covers" if cp.n >= last else "does NOT yet cover"
    w.text(
        f"Checkpoint: row {cp.n}, hash {cp.hash}, anchor row {cp.anchor_n}, alert log seq"
        f" {cp.alert_seq}; it {covered} the alert's rows."
    )
    w.text(f"Signature: {ev.signature}.")
    if cp.sig:
        w.text(f"key {cp.key}", "Courier", 7)
        w.text(f"sig {cp.sig}", "Courier", 7)
    w.heading("How to check this pack")
    w.text(
        f"Run `tagwatch audit verify --db {ev.store}` on the store: it recomputes the hash"
        " chain and checks the signed checkpoint. Every row this pack cites is in the"
        " manifest (alert-ID.json) with its number, hash, the hash it chains onto and its"
        " body: sha256(prev, row) must equal its hash, and the hash must equal the one the"
        " store holds at that row. The manifest also gives the sha256 of this PDF and of the"
        " GeoJSON."
    )


def render(ev: Evidence) -> bytes:
    buf = io.BytesIO()
    c = Canvas(buf, pagesize=A4, invariant=1, pageCompression=0)
    when = datetime.fromtimestamp(ev.when, UTC)
    c.setDateFormatter(lambda *_: when.strftime("D:%Y%m%d%H%M%S+00'00'"))
    c.setTitle(f"Evidence pack: alert {ev.alert_id}")
    c.setAuthor("tagwatch")
    c.setSubject(f"{ev.latest.get('kind')} of subject {ev.latest.get('subject')}")
    c.setCreator("tagwatch audit export")
    w = _Writer(c, ev.alert_id)
    w.text(f"Evidence pack: alert {ev.alert_id}", "Helvetica-Bold", 15)
    w.text(f"store {ev.store}; made from the evidence ledger only, read-only", size=8)
    w.heading("Decision")
    for line in reasons(ev):
        w.text(line)
    side = min(WIDTH - 2 * MARGIN, w.y - MARGIN - 20)
    w.need(side + 14)
    draw_map(c, ev, (MARGIN, w.y - side - 4, WIDTH - 2 * MARGIN, side))
    w.y -= side + 8
    w.text(
        "Map: zone shaded, track line, accuracy circles, evidence fixes red with their seq,"
        " X the deciding fix; local equirectangular projection, north up.",
        size=7,
    )
    w.new_page()
    _fixes(w, ev)
    _ledger(w, ev)
    w.finish()
    c.save()
    return buf.getvalue()

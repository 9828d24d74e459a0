/* tagwatch monitor console: the map (vendored Leaflet, SVG renderer).
 *
 * No tile layer unless the session names one (`tiles`: a URL template, or {url,
 * attribution}): a control room is often offline, and the zone, the track and the
 * evidence need no background to be read. Every drawn path has a class the tests and
 * the legend count: tw-zone, tw-track (the line), tw-fix, tw-acc (accuracy circles),
 * tw-evidence, tw-decided (the deciding fix from the record's detail), tw-victim. */
"use strict";

(function () {
  const { h } = TW;

  const STYLE = {
    exclusion: { color: "#b3121b", weight: 2, fillColor: "#d7263d", fillOpacity: 0.12 },
    inclusion: { color: "#1f5fa8", weight: 2, dashArray: "6 4", fillColor: "#3a7bd5", fillOpacity: 0.08 },
  };

  function tip(layer, text, permanent) {
    layer.bindTooltip(h("span", { text }), {
      permanent: !!permanent,
      direction: permanent ? "right" : "top",
      className: permanent ? "tw-label" : "",
      offset: permanent ? [8, 0] : [0, -6],
    });
    return layer;
  }

  const M = (TW.map = {});

  /** A fresh map in `el` (removing `old`), with a scale and, if configured, tiles. */
  M.make = function make(el, old) {
    if (old) old.remove();
    const tiles = TW.session && TW.session.tiles;
    const map = L.map(el, { attributionControl: !!tiles, zoomSnap: 0.25, preferCanvas: false });
    if (tiles) {
      const url = typeof tiles === "string" ? tiles : tiles.url;
      const attribution = (typeof tiles === "object" && tiles.attribution) || "";
      L.tileLayer(url, { maxZoom: 20, attribution }).addTo(map);
      el.classList.add("tiled");
    } else {
      el.classList.remove("tiled");
    }
    L.control.scale({ imperial: false }).addTo(map);
    map.setView([0, 0], 2);
    return map;
  };

  /** One zone Feature: polygons with their holes, or an exact circle (Point + radius_m). */
  M.zone = function zone(map, feature) {
    const p = feature.properties || {};
    const style = { ...(STYLE[p.kind] || STYLE.exclusion), className: `tw-zone tw-zone-${p.kind || "exclusion"}` };
    let layer;
    const g = feature.geometry || {};
    if (g.type === "Point" && p.radius_m) {
      layer = L.circle([g.coordinates[1], g.coordinates[0]], { radius: Number(p.radius_m), ...style });
    } else if (g.type === "Polygon" || g.type === "MultiPolygon") {
      layer = L.geoJSON(feature, { style: () => style });
    } else {
      return null;
    }
    const name = p.name ? `${p.name} (${p.id})` : p.id || "zone";
    tip(layer, `${name} · ${p.kind || "exclusion"}${p.schedule && p.schedule.length ? ` · ${[].concat(p.schedule).join("; ")}` : ""}`);
    return layer.addTo(map);
  };

  const key = (f) => `${f.tag}:${f.seq}`;

  /** The track with accuracy circles, the evidence fixes on top; returns the layers. */
  M.track = function track(map, fixes, evidence) {
    const sorted = (fixes || []).slice().sort((a, b) => a.t - b.t);
    const out = [];
    if (sorted.length > 1) {
      out.push(
        L.polyline(sorted.map((f) => [f.lat, f.lon]), {
          className: "tw-track", color: "#243b53", weight: 2, opacity: 0.8,
        }).addTo(map),
      );
    }
    for (const f of sorted) {
      if (f.acc) {
        out.push(
          L.circle([f.lat, f.lon], {
            radius: f.acc, className: "tw-acc", color: "#486581", weight: 1, opacity: 0.5,
            fillOpacity: 0.05, interactive: false,
          }).addTo(map),
        );
      }
    }
    for (const f of sorted) {
      out.push(
        tip(
          L.circleMarker([f.lat, f.lon], {
            radius: 3, className: "tw-fix", color: "#102a43", weight: 1, fillColor: "#829ab1", fillOpacity: 1,
          }),
          `${f.tag} #${f.seq} · ${TW.clock(f.t)} · ±${Math.round(f.acc || 0)} m`,
        ).addTo(map),
      );
    }
    const ev = new Set((evidence || []).map(key));
    for (const f of evidence || []) {
      out.push(
        tip(
          L.circleMarker([f.lat, f.lon], {
            radius: 7, className: "tw-evidence", color: "#7a0a10", weight: 3, fillColor: "#f0b429", fillOpacity: 0.95,
          }),
          `evidence ${f.tag} #${f.seq} · ${TW.clock(f.t)} · ±${Math.round(f.acc || 0)} m`,
        ).addTo(map),
      );
    }
    return { layers: out, count: sorted.length, evidence: ev.size };
  };

  /** The deciding fix named in the record's detail (and where a route started). */
  M.decided = function decided(map, d) {
    const out = [];
    if (!d || d.lat === undefined) return out;
    out.push(
      tip(L.circleMarker([d.lat, d.lon], {
        radius: 11, className: "tw-decided", color: "#000", weight: 2, dashArray: "3 3", fill: false,
      }), `decided on this fix · ${TW.clock(d.t)}`).addTo(map),
    );
    if (d.from_lat !== undefined) {
      out.push(L.polyline([[d.from_lat, d.from_lon], [d.lat, d.lon]], {
        className: "tw-route", color: "#b3121b", weight: 2, dashArray: "8 6",
      }).addTo(map));
    }
    return out;
  };

  /** The protected device's positions, each labelled with its age. */
  M.victim = function victim(map, positions) {
    return (positions || []).map((v) =>
      tip(
        L.circleMarker([v.lat, v.lon], {
          radius: 6, className: "tw-victim", color: "#5b2a86", weight: 2, fillColor: "#c39bd3", fillOpacity: 0.9,
        }),
        `${v.device || "protected"} · ${
          v.age_s === undefined ? TW.clock(v.t) : v.age_s >= 0 ? `${TW.duration(v.age_s)} before` : `${TW.duration(-v.age_s)} after`
        }`,
        true,
      ).addTo(map),
    );
  };

  /** Zoom to everything drawn (or to a point, or leave the world view). */
  M.fit = function fit(map, layers, fallback) {
    const drawn = layers.filter(Boolean);
    map.invalidateSize();
    if (drawn.length) {
      const b = L.featureGroup(drawn).getBounds();
      if (b.isValid()) {
        map.fitBounds(b.pad(0.15), { maxZoom: 18, animate: false });
        return;
      }
    }
    if (fallback) map.setView(fallback, 16, { animate: false });
  };

  /** The legend under a map: what is drawn, with counts. */
  M.legend = function legend(el, items) {
    TW.clear(el).append(
      ...items.map(([cls, text, n, testid]) =>
        h("li", { testid, dataset: { count: String(n) } }, h(`span.swatch.${cls}`, { "aria-hidden": "true" }), ` ${text}: ${n}`),
      ),
    );
  };
})();

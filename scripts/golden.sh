#!/usr/bin/env bash
# Golden hashes: sha256 of what `tagwatch replay` writes (alerts JSONL and the --db alert
# records) and of what `tagwatch simulate` writes, for fixed seeds. Run it before and after a
# change that must not alter behaviour; the two outputs must be identical.
#
#   scripts/golden.sh [WORKDIR]        (default run/golden; needs the venv: make .venv)
#
# Inputs are simulated by the checkout under test too, so a changed simulator shows up as a
# changed input hash before any replay hash. Everything goes through the CLI only, so the
# script outlives any module move. The decisions bench seed is replayed one record per batch
# as bench/bench_decisions.py does; the 24 h health day as bench/bench_health.py does.
set -euo pipefail
cd "$(dirname "$0")/.."
TW=${TAGWATCH:-.venv/bin/tagwatch}
PY=${PYTHON:-.venv/bin/python}
W=${1:-run/golden}
rm -rf "$W"; mkdir -p "$W"

db_records() {  # the alert records a --db holds, in log order (written_at is wall time)
  "$PY" - "$1" <<'PY'
import sqlite3, sys, hashlib
con = sqlite3.connect(sys.argv[1])
h = hashlib.sha256()
for (rec,) in con.execute("SELECT record FROM alert_log ORDER BY seq"):
    h.update(bytes(rec) if not isinstance(rec, str) else rec.encode()); h.update(b"\n")
print(h.hexdigest())
PY
}

hash_run() {  # NAME DIR [SETTINGS]
  local name=$1 dir=$2 settings=${3:-}
  local extra=()
  [[ -n $settings ]] && extra=(--settings "$settings")
  "$TW" replay "$dir/replay.jsonl" --zones "$dir/zones.geojson" --subjects "$dir/subjects.toml" \
    "${extra[@]}" --out "$dir/alerts.jsonl" --db "$dir/alerts.db" -q
  printf '%-28s input  %s\n' "$name" "$(cat "$dir/replay.jsonl" "$dir/zones.geojson" "$dir/subjects.toml" | sha256sum | cut -c1-64)"
  printf '%-28s alerts %s\n' "$name" "$(sha256sum < "$dir/alerts.jsonl" | cut -c1-64)"
  printf '%-28s db     %s\n' "$name" "$(db_records "$dir/alerts.db")"
}

printf 'batch_max = 1\n' > "$W/batch1.toml"
SEED=20260324
for fam in lurk walk_in clip drive_through drive_around jump late_batch reorder_dup \
           curfew_dst victim_moving cell hole; do
  n=48; [[ $fam == curfew_dst ]] && n=16; [[ $fam == victim_moving ]] && n=32
  "$TW" simulate --family "$fam" --seed $SEED --episodes $n --out-dir "$W/fam/$fam" >/dev/null
  printf '%-28s truth  %s\n' "decisions/$fam" "$(cat "$W/fam/$fam/truth.jsonl" "$W/fam/$fam/episodes.jsonl" | sha256sum | cut -c1-64)"
  hash_run "decisions/$fam" "$W/fam/$fam" "$W/batch1.toml"
done

"$TW" simulate --subjects 50 --seed 1 --out-dir "$W/fleet" >/dev/null
printf '%-28s truth  %s\n' fleet "$(sha256sum < "$W/fleet/truth.jsonl" | cut -c1-64)"
hash_run fleet "$W/fleet"

if [[ ${GOLDEN_QUICK:-0} != 1 ]]; then
  "$TW" simulate --subjects 200 --seed 20261123 --duration 24h --health --noise urban \
    --out-dir "$W/day" >/dev/null
  printf '%-28s truth  %s\n' health-day "$(sha256sum < "$W/day/truth.jsonl" | cut -c1-64)"
  hash_run health-day "$W/day"
fi

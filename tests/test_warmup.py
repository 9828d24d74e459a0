"""`serve` warms the kernels before it takes input (engine/cli/warmup.py): after the
warm-up, a fresh pipeline deciding a simulated fleet (another world: curfews, phones,
polygons and circles of its own) compiles no kernel signature it did not have. Without the
warm-up the same run compiles several: the check can fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.cli.warmup import _warm
from engine.settings import Settings
from zones.shard import Shard

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys
from numba.core.dispatcher import Dispatcher
from engine.cli.warmup import warm
from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.store.config import ConfigFiles
from engine.wire.decode import decode_replay_line
from zones.shard import Shard

def compiled():
    out = {}
    for name, m in list(sys.modules.items()):
        if name.split(".")[0] in ("engine", "zones"):
            for k, v in list(vars(m).items()):
                if isinstance(v, Dispatcher):
                    out[name + "." + k] = len(v.signatures)
    return out

d, how, shard = sys.argv[1], sys.argv[2], sys.argv[3]
part = None if shard == "-" else Shard(int(shard), 2)
if how == "warm":
    warm(Settings(), part)
cfg = ConfigFiles.read(d + "/zones.geojson", d + "/subjects.toml", part)
p = Pipeline(cfg.zoneset(), Settings())
before = compiled()
lines = open(d + "/replay.jsonl", "rb").read().splitlines()[:4000]
recs = [r for line in lines for r in decode_replay_line(line, "x")[0]]
for k in range(0, len(recs), 200):
    batch = recs[k : k + 200]
    t = max(r.t for r in batch)
    p.process(batch, origin="mqtt", arrival=t, wall=t)
after = compiled()
print(json.dumps(sorted(k for k in after if after[k] > before.get(k, 0))))
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fleet")
    args = ["simulate", "--seed", "31", "--subjects", "30", "--duration", "3h"]
    assert main([*args, "--out-dir", str(d)]) == 0
    return d


def _new_signatures(d: Path, how: str, shard: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(d), how, shard],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("shard", ["-", "0"])
def test_after_the_warm_up_a_fleet_compiles_nothing_new(fleet: Path, shard: str) -> None:
    assert _new_signatures(fleet, "warm", shard) == []


def test_without_it_the_same_fleet_compiles_kernels(fleet: Path) -> None:
    assert len(_new_signatures(fleet, "cold", "-")) >= 3


def test_the_warm_up_world_exercises_every_breach_kind() -> None:
    kinds = Counter(_warm(Settings(), None))
    for k in ("zone_breach", "zone_approach", "curfew_breach", "proximity", "tamper"):
        assert kinds[k] > 0, kinds
    assert Counter(_warm(Settings(), Shard(1, 2)))["zone_breach"] > 0

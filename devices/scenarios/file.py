"""Scenario files: a run, its zones, subjects and their scripted timelines, in one TOML file.

`load_scenario(path)` reads and checks a file; every mistake is a `ScenarioError` naming the
file, the entry and the field. `run_scenario(scenario)` plans, senses and judges it into the
same `SimRun` the fleet simulator makes, so `devices.sim.output.write_run` writes its
zones.geojson, subjects.toml, replay.jsonl and truth.jsonl. `check_expectations` holds a run
to the episodes the file's `[[expect]]` entries promise. The format: devices/README.md.

This module is the one place to import them from; the work is split between parse.py
(reading tables, places, zones), timeline.py (timelines), load.py and model.py (the checked
`Scenario`) and run.py (running it)."""

from devices.scenarios.load import load_scenario
from devices.scenarios.model import TRUTH_KINDS, Scenario
from devices.scenarios.parse import ScenarioError, parse_duration, parse_instant
from devices.scenarios.run import check_expectations, run_scenario

__all__ = [
    "TRUTH_KINDS",
    "Scenario",
    "ScenarioError",
    "check_expectations",
    "load_scenario",
    "parse_duration",
    "parse_instant",
    "run_scenario",
]

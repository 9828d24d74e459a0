"""`tagwatch serve --config FILE` (engine/cli/serveconf.py): the options from a TOML file,
the command line's winning; refused with a clear error when the file is wrong."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from engine.cli.main import _serve_parser, build_parser, main
from engine.cli.serveconf import expand
from tests.helpers import AlertCollector, EngineProcess, publish, wait_online, write_world
from tests.test_serve_mqtt import _episode_done, track_in_and_out


def _expand(argv: list[str]) -> list[str]:
    return expand(argv, _serve_parser(build_parser()))


def test_the_files_options_come_first_with_paths_relative_to_it(tmp_path: Path) -> None:
    cfg = tmp_path / "etc" / "tagwatch.toml"
    cfg.parent.mkdir()
    cfg.write_text(
        'broker = "10.0.0.1:8883"\nzones = "zones.geojson"\nsubjects = "/srv/subjects.toml"\n'
        'client_id = "engine-a"\ntls-insecure = true\ncafile = "ca.crt"\n'
        'webhook = ["a=https://a.example/h", "https://b.example/h"]\n'
        "[engine]\nreport_fast_s = 20.0\n"
    )
    argv = _expand(["-v", "serve", "--config", str(cfg), "--broker", "127.0.0.1:1"])
    etc = str(cfg.parent.resolve())
    assert argv == [
        "-v", "serve", "--broker", "10.0.0.1:8883", "--zones", f"{etc}/zones.geojson",
        "--subjects", "/srv/subjects.toml", "--client-id", "engine-a", "--tls-insecure",
        "--cafile", f"{etc}/ca.crt", "--webhook", "a=https://a.example/h",
        "--webhook", "https://b.example/h", "--settings", str(cfg.resolve()),
        "--broker", "127.0.0.1:1",
    ]  # fmt: skip
    args = build_parser().parse_args(argv)
    assert args.broker == "127.0.0.1:1"  # the command line wins
    assert args.client_id == "engine-a" and args.tls_insecure is True
    assert len(args.webhook) == 2


def test_a_postgresql_url_as_db_is_taken_as_it_is(tmp_path: Path) -> None:
    cfg = tmp_path / "tagwatch.toml"
    cfg.write_text('db = "postgresql://tagwatch@db.internal/tagwatch?sslmode=require"\n')
    argv = _expand(["serve", "--config", str(cfg)])
    assert argv == ["serve", "--db", "postgresql://tagwatch@db.internal/tagwatch?sslmode=require"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('brokr = "x"\n', "unknown key 'brokr'; serve's options are:"),
        ('password = "hunter2"\n', "a password is not kept in the config file"),
        ("tls-insecure = 1\n", "tls-insecure is a flag: true or false"),
        ("broker = [1, 2]\n", "broker must be a string or a number"),
        ('broker = "x\n', "--config"),
        ('settings = "s.toml"\n[engine]\nreport_fast_s = 1.0\n', "not both"),
    ],
)
def test_a_wrong_config_file_is_refused_naming_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, says: str
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert main(["serve", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tagwatch: error: ") and says in err and err.count("\n") == 1, err
    assert "hunter2" not in err


def test_a_missing_config_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", f"--config={tmp_path / 'none.toml'}"]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_serve_runs_from_a_config_file_alone(mosquitto, tmp_path: Path) -> None:
    zones, subjects = write_world(tmp_path)
    cfg = tmp_path / "tagwatch.toml"
    cfg.write_text(
        f'broker = "{mosquitto.host}:{mosquitto.port}"\nzones = "{zones.name}"\n'
        f'subjects = "{subjects.name}"\ndb = "tw.db"\nstats-every = 1\n'
        "[engine]\nurgent_lane = false\n"
    )
    eng = EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, tmp_path / "tw.db")
    eng.args = [sys.executable, "-m", "engine.cli", "serve", "--config", str(cfg)]

    async def scenario() -> list:  # type: ignore[type-arg]
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            await publish(mosquitto.host, mosquitto.port, track_in_and_out())
            return await col.wait_for(_episode_done)

    with eng:
        alerts = asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    assert [a.state for a in alerts if a.kind == "zone_breach"] == ["open", "closed"]
    log = eng.log_text()
    assert "store " + str(tmp_path / "tw.db") in log, log  # db relative to the file
    assert "priority lane" not in log, log  # the [engine] table is in force


def test_the_shipped_config_and_unit_fit_together() -> None:
    root = Path(__file__).resolve().parent.parent
    unit = (root / "deploy/systemd/tagwatch.service").read_text()
    start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    cmd = start.split("=", 1)[1].split()
    assert cmd[1:3] == ["serve", "--config"] and cmd[0].endswith("/tagwatch")
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    argv = _expand(["serve", "--config", str(root / "deploy/tagwatch.toml")])
    args = build_parser().parse_args(argv)  # every key of the example is one of serve's
    assert args.username == "engine" and args.db == "/var/lib/tagwatch/tagwatch.db"
    assert args.zones == str(root / "deploy/zones.geojson")
    from engine.settings import Settings

    assert Settings.from_toml(args.settings).snapshot_every_s == 30.0


def test_the_shard_template_unit_names_its_shard_and_store() -> None:
    root = Path(__file__).resolve().parent.parent
    unit = (root / "deploy/systemd/tagwatch@.service").read_text()
    start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    cmd = start.split("=", 1)[1].replace("%i", "1-of-2").split()
    argv = _expand([*cmd[1:3], str(root / "deploy/tagwatch.toml"), *cmd[4:]])
    args = build_parser().parse_args(argv)
    assert str(args.shard) == "1/2" and args.db == "/var/lib/tagwatch/tagwatch.db"
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit

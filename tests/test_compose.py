"""The compose file (deploy/compose/): what can be checked without Docker here. Every
service's command is one the CLI takes, the engines are the shards 0..N-1 of one N on one
PostgreSQL URL without a password in it, all shards sign with one key, and the files it
mounts and the image copies exist."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from engine.broker.process import BROKER_QUEUE_OPTIONS
from engine.cli.main import _serve_parser, build_parser
from engine.cli.serveconf import expand
from zones.shard import Shard

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "deploy/compose"


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((HERE / "compose.yaml").read_text())


def test_the_engines_are_every_shard_once_on_one_postgresql_url() -> None:
    services = _compose()["services"]
    engines = {k: v for k, v in services.items() if v.get("command", [""])[0] == "serve"}
    shards, keys = [], set()
    for svc in engines.values():
        cmd = [str(c) for c in svc["command"]]
        at = cmd.index("--config")
        assert cmd[at + 1] == "/etc/tagwatch/tagwatch.toml"
        mounts = {m.split(":")[1]: m.split(":")[0] for m in svc["volumes"]}
        assert mounts["/etc/tagwatch/tagwatch.toml"] == "./tagwatch.toml"
        keys.add(mounts["/var/lib/tagwatch"])  # the signing key's volume
        cmd[at + 1] = str(HERE / "tagwatch.toml")
        args = build_parser().parse_args(expand(cmd, _serve_parser(build_parser())))
        shards.append(args.shard)
        assert args.db.startswith("postgresql://") and "@postgres" in args.db
        assert ":" not in args.db.split("//", 1)[1].split("@", 1)[0], "a password in the URL"
        assert svc["environment"]["PGPASSWORD"].startswith("${TAGWATCH_PG_PASSWORD")
    n = shards[0].count
    assert sorted(shards, key=lambda s: s.index) == [Shard(i, n) for i in range(n)], shards
    # one key for every shard (an action is written into the chain of the alert's shard)
    assert len(keys) == 1, f"the shards sign with different keys: {keys}"


def test_the_simulator_services_and_the_files_exist() -> None:
    services = _compose()["services"]
    for name in ("world", "fleet"):
        args = build_parser().parse_args([str(c) for c in services[name]["command"]])
        assert args.seed == 7 and args.subjects == 60
    assert services["fleet"]["command"][services["fleet"]["command"].index("--broker") + 1] == (
        "mosquitto:1883"
    )
    conf = (HERE / "mosquitto.conf").read_text().splitlines()
    for opt in BROKER_QUEUE_OPTIONS:
        assert opt in conf, f"compose's mosquitto.conf lacks {opt!r}"
    docker = (HERE / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pkg in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        if "." not in pkg:
            assert f"COPY {pkg} ./{pkg}" in docker, f"the image lacks {pkg}"
    assert ".venv" in (ROOT / ".dockerignore").read_text().split()

"""The `tagwatch` command line: serve, replay, zones check, simulate, demo, watch, alerts."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine import __version__
from engine.errors import TagwatchError
from engine.mqtt import auth as mqttauth
from engine.mqtt.auth import MqttAuth
from engine.settings import Settings
from zones.shard import Shard

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from engine.store.sql.store import SqlStore


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_toml(args.settings) if getattr(args, "settings", None) else Settings()


def _load_zones(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from zones.load import load

    return load(args.zones, args.subjects)


def cmd_zones_check(args: argparse.Namespace) -> int:
    from zones.load import check

    problems = check(args.zones, args.subjects)
    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    zs = _load_zones(args)
    print(
        f"ok: {len(zs.zones)} zones, {len(zs.subjects)} subjects, "
        f"{sum(len(s.tags) for s in zs.subjects)} tags, "
        f"{sum(len(s.protected) for s in zs.subjects)} protected devices"
    )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from engine.replay import replay

    zs = _load_zones(args)
    if args.shard is not None:  # what that shard's engine decides (the rest: elsewhere)
        zs = args.shard.split(zs)
    settings = _settings(args)
    store = _store(args.db, settings) if args.db else None
    out_path = Path(args.out)
    tmp = out_path.with_name(out_path.name + ".partial")
    try:
        with tmp.open("wb") as out:
            summary = replay(
                args.file, zs, out, settings=settings, store=store, progress=not args.quiet
            )
        tmp.replace(out_path)  # a reader never sees a half-written alerts file
    except OSError as e:
        raise TagwatchError(f"cannot write {out_path}: {e.strerror}") from None
    finally:
        if store is not None:
            store.close()
        tmp.unlink(missing_ok=True)
    if not args.quiet:
        print(summary.render(), file=sys.stderr)
        print(f"alerts written to {out_path}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from engine.core.pipeline import Pipeline
    from engine.mqtt.serve import Engine
    from engine.mqtt.session import BrokerAddress
    from engine.notify.webhook import parse_webhooks
    from engine.store.config import ConfigFiles
    from engine.store.signing import default_key_path, load_or_create_key
    from engine.store.sql import enginelock
    from engine.store.sql.conn import is_url
    from engine.store.sql.open import shard_target

    auth = MqttAuth.from_args(args)
    webhooks = parse_webhooks(args.webhook, args.webhook_secret_file)  # before anything starts
    sock = _http_socket(args)  # bound first: a port in use fails before anything starts
    # What was hashed is what is used: the pipeline is built from the texts read here,
    # and SIGHUP re-reads the same paths (docs/configuration.md).
    config = ConfigFiles.read(args.zones, args.subjects, args.shard)
    zs = config.zoneset()
    settings = _settings(args)
    pipeline = Pipeline(zs, settings)
    # Every shard signs with the deployment's key (an action on another shard's alert is
    # written into that shard's chain); each keeps its store beside the --db named
    key = load_or_create_key(args.key or default_key_path(args.db))
    own = (
        args.db if args.shard is None else shard_target(args.db, args.shard.index, args.shard.count)
    )
    store = _store(own, settings, signing_key=key)
    try:  # one engine per store (engine/store/sql/enginelock.py)
        lock = enginelock.hold(store.target, settings.engine_lock_wait_s)
    except BaseException:
        store.close()
        raise
    store.fence = lock.fence()  # PostgreSQL: each write first checks the lock is still held
    # The console reads every shard of a PostgreSQL database; of SQLite files, its own
    console_db = args.db if is_url(args.db) else own
    log = logging.getLogger("tagwatch.serve")
    log.info(
        "serving %d subjects, %d zones, %d devices%s; broker %s; store %s",
        len(zs.subjects), len(zs.zones), pipeline.registry.n_slots,
        "" if args.shard is None else f" (shard {args.shard}: {len(zs.elsewhere)} devices"
        " are other shards')", args.broker, store.name,
    )  # fmt: skip
    from engine.cli.warmup import warm

    log.info("kernels warmed in %.2f s (before any input)", warm(settings, args.shard))

    async def main() -> str | None:
        engine = Engine(
            pipeline,
            store,
            BrokerAddress.parse(args.broker),
            client_id=args.client_id,
            stats_every_s=args.stats_every,
            client_kwargs=auth.kwargs(),
            config=config,
        )
        # Before connecting: the broker redelivers what was not acknowledged, and it must
        # meet the state the engine had when it last committed.
        await asyncio.to_thread(engine.recover)
        engine.install_signal_handlers()
        from engine.mqtt.consoleview import ServeView
        from engine.notify.notifier import Notifier

        # Webhooks and protected-device warnings follow the alert log (docs/notifications.md)
        notifier = Notifier.open(store.target, webhooks, ServeView(engine).subjects,
                                 engine.session.publish_confirmed, store.note)  # fmt: skip
        async with asyncio.TaskGroup() as tg:  # these stop when the engine does
            if notifier is not None:
                tg.create_task(notifier.run(engine.stopping), name="notify")
            if sock is not None:
                from engine.console.server import ConsoleServer

                console = ConsoleServer(
                    sock, console_db,
                    ServeView(engine, notifier.counts if notifier is not None else None), settings,
                    certfile=args.http_cert, keyfile=args.http_key, tiles=args.http_tiles,
                )  # fmt: skip
                tg.create_task(console.run(engine.stopping), name="console")
            await engine.run()
        return engine.fatal

    try:
        fatal = asyncio.run(main())
    finally:
        store.close()
        lock.release()
    if fatal:
        raise TagwatchError(fatal)
    return 0


def _http_socket(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The console's listening socket (serve --http), or None when not asked for."""
    if (args.http_cert is None) != (args.http_key is None):
        raise TagwatchError("--http-cert and --http-key go together (the console's TLS)")
    if args.http is None:
        if args.http_cert or args.http_tiles:
            raise TagwatchError("--http-cert and --http-tiles need --http HOST:PORT")
        return None
    from engine.console.pages import Tiles
    from engine.console.server import HttpAddress

    Tiles.parse(args.http_tiles)  # a wrong one is an error now, before anything starts
    return HttpAddress.parse(args.http).bind()


def cmd_checkpoint(args: argparse.Namespace) -> int:
    """Save the engine's retained signed ledger checkpoint (for audit verify --checkpoint)."""
    from engine.mqtt.checkpoint import retained_checkpoint

    auth = MqttAuth.from_args(args)
    from engine.wire import topics

    topic = topics.checkpoint(None if args.shard is None else args.shard.label)
    cp = asyncio.run(
        retained_checkpoint(args.broker, args.timeout, client_kwargs=auth.kwargs(), topic=topic)
    )
    if args.out == "-":
        print(cp.decode())
        return 0
    try:
        Path(args.out).write_bytes(cp + b"\n")
    except OSError as e:
        raise TagwatchError(f"cannot write {args.out}: {e.strerror}") from None
    print(f"checkpoint saved to {args.out}: {cp.decode()}")
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    from engine.cli.console import AlertPrinter
    from engine.store.casework.reader import open_reader

    # reading never writes; a PostgreSQL URL naming no schema: every shard's alerts
    with open_reader(args.db) as store:
        printer = AlertPrinter()
        alerts = store.alert_log() if args.log else store.current_alerts(args.state)
        for a in alerts:
            printer.print(a)
        if args.dead_letters:
            for d in store.dead_letters():
                sha = f", sha256 {d.sha256}" if d.sha256 else ""
                print(f"dead letter {d.seq}: {d.origin}: {d.reason} ({d.size} bytes{sha})")
    return 0


def _store(path: str, settings: Settings, signing_key: Ed25519PrivateKey | None = None) -> SqlStore:
    """The engine's store (a SQLite file or a PostgreSQL URL) with the settings'
    dead-letter limits (and, for serve, the key that signs its ledger checkpoints)."""
    from engine.store.sql.open import open_store

    return open_store(
        path,
        dead_letter_max_bytes=settings.dead_letter_max_bytes,
        dead_letter_budget=settings.dead_letter_budget,
        dead_letter_window_s=settings.dead_letter_window_s,
        signing_key=signing_key,
        ledger_rows=settings.ledger_rows,
        ledger_index_s=settings.ledger_index_s,
        ledger_index_max=settings.ledger_index_max,
    )


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _demo_broker(text: str) -> str:
    """The demo's --broker: "mosquitto" (start one here) or a running broker's HOST:PORT."""
    host, _, port = text.rpartition(":")
    if text == "mosquitto" or (host and port.isdigit()):
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r}: use mosquitto (start one here) or the HOST:PORT of a running broker"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from engine.cli.demo import run_demo

    return run_demo(
        subjects=args.subjects,
        seed=args.seed,
        broker=args.broker,
        run_dir=Path(args.run_dir),
        duration_s=args.duration,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tagwatch",
        description="Watch GPS tags against exclusion zones, curfews and victims' phones.",
    )
    p.add_argument("--version", action="version", version=f"tagwatch {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def zone_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--zones", required=True, help="zones GeoJSON FeatureCollection")
        sp.add_argument("--subjects", required=True, help="subjects TOML")
        sp.add_argument("--settings", help="engine settings TOML (see docs/settings.md)")

    sp = sub.add_parser("serve", help="run the live engine against an MQTT broker")
    sp.add_argument(
        "--config", metavar="FILE", help="take these options from a TOML file (the command"
        " line's win; docs/deployment.md)",
    )  # fmt: skip
    sp.add_argument("--broker", default="127.0.0.1:1883", help="HOST:PORT (default %(default)s)")
    zone_args(sp)
    sp.add_argument(
        "--db",
        default="tagwatch.db",
        help="alert store: a SQLite file, or a postgresql://USER:PASS@HOST/DB URL"
        " (?schema=NAME: its schema, default tagwatch) (default %(default)s); with --shard,"
        " the shard's store is beside it (FILE.shardI.db, or schema tagwatch_shard_I)",
    )
    sp.add_argument(
        "--shard", metavar="I/N", type=_shard, help="serve only the subjects whose stable hash"
        " falls in part I of N (from 0), on their own devices' topics (docs/deployment.md)",
    )  # fmt: skip
    sp.add_argument(
        "--key",
        help="Ed25519 key that signs the ledger's checkpoints (default DB.key; created 0600)",
    )
    sp.add_argument("--client-id", default="tagwatch-engine", help="MQTT client id")
    sp.add_argument("--stats-every", type=float, default=10.0, help="seconds between stats lines")
    sp.add_argument(
        "--http", metavar="HOST:PORT", help="serve the monitor console and its API here (off"
        " unless given; HOST defaults to 127.0.0.1; docs/console.md)",
    )  # fmt: skip
    sp.add_argument("--http-cert", metavar="PEM", help="the console's TLS certificate")
    sp.add_argument("--http-key", metavar="PEM", help="...and its private key")
    sp.add_argument(
        "--http-tiles", metavar="DIR|URL",
        help="a map tile layer for the console: a local directory of Z/X/Y.png tiles (served"
        " at /tiles/) or a tile server's URL template (https://host/{z}/{x}/{y}.png);"
        " without it the maps draw zones and tracks on a plain background",
    )  # fmt: skip
    sp.add_argument(
        "--webhook", action="append", metavar="[NAME=]URL",
        help="POST every alert record, signed, to this URL (repeatable; docs/notifications.md)",
    )  # fmt: skip
    sp.add_argument("--webhook-secret-file", metavar="FILE", help="the webhooks' HMAC secret")
    mqttauth.add_arguments(sp)
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("replay", help="run a JSON Lines track file through the pipeline")
    sp.add_argument("file", help="replay file (JSON Lines, arrival order); - for stdin")
    zone_args(sp)
    sp.add_argument("--out", required=True, help="alerts JSON Lines to write")
    sp.add_argument("--db", help="also write alerts and dead letters to this SQLite store")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    sp.add_argument("--shard", metavar="I/N", type=_shard, help="decide only the subjects"
                    " `serve --shard I/N` would (the others' records are skipped)")  # fmt: skip
    sp.set_defaults(func=cmd_replay)

    sp = sub.add_parser("zones", help="zone file tools")
    zsub = sp.add_subparsers(dest="zones_command", metavar="ACTION", required=True)
    zc = zsub.add_parser("check", help="validate a zones GeoJSON and subjects TOML")
    zc.add_argument("zones")
    zc.add_argument("subjects")
    zc.set_defaults(func=cmd_zones_check)

    sp = sub.add_parser(
        "checkpoint",
        help="save the engine's retained signed ledger checkpoint (audit verify --checkpoint)",
    )
    sp.add_argument("--broker", default="127.0.0.1:1883")
    sp.add_argument("--out", default="-", help="file to write (default: print it)")
    sp.add_argument("--timeout", type=float, default=10.0, help="give up after N seconds")
    sp.add_argument("--shard", metavar="I/N", type=_shard, help="that shard's checkpoint")
    mqttauth.add_arguments(sp)
    sp.set_defaults(func=cmd_checkpoint)

    sp = sub.add_parser("alerts", help="list alerts from an alert store")
    sp.add_argument("--db", default="tagwatch.db")
    sp.add_argument("--state", choices=["open", "acknowledged", "closed"])
    sp.add_argument("--log", action="store_true", help="every lifecycle record, in order")
    sp.add_argument("--dead-letters", action="store_true", help="also list dead letters")
    sp.set_defaults(func=cmd_alerts)

    sp = sub.add_parser("demo", help="broker + engine + simulated fleet, live alerts")
    sp.add_argument("--subjects", type=int, default=50)
    sp.add_argument("--seed", type=int, default=1)
    sp.add_argument(
        "--broker", type=_demo_broker, default="mosquitto", metavar="mosquitto|HOST:PORT",
        help="start a private mosquitto (the default; needs it installed), or use the "
        "running broker at HOST:PORT (a test broker: the simulated fleet publishes there)",
    )  # fmt: skip
    sp.add_argument("--run-dir", default="run/demo", help="where world files and the db go")
    sp.add_argument("--duration", type=float, default=0.0, help="stop after N seconds (0: Ctrl-C)")
    sp.set_defaults(func=cmd_demo)

    from devices.cli import register
    from engine.broker import config as brokerconfig
    from engine.cli import users, watch
    from engine.replay import obey_factory
    from engine.store import audit

    # simulate --obey: the closed loop's engine (devices/ cannot import it)
    register(sub).set_defaults(obey_factory=obey_factory())
    watch.register(sub)
    brokerconfig.register(sub)
    audit.register(sub)
    users.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--config" in argv or any(a.startswith("--config=") for a in argv):
        from engine.cli.serveconf import expand

        try:
            argv = expand(argv, _serve_parser(parser))
        except TagwatchError as e:
            print(f"tagwatch: error: {e}", file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("mqtt").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except TagwatchError as e:
        print(f"tagwatch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _serve_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve: argparse.ArgumentParser = sub.choices["serve"]
    return serve


if __name__ == "__main__":
    sys.exit(main())

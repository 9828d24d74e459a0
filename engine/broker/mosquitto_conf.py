"""mosquitto.conf for `tagwatch broker-config`: TLS only, passwords and ACL for every
listener, persistence and queues sized for an engine outage, a log line per connection."""

from __future__ import annotations

from pathlib import Path

from engine.broker.process import (
    BROKER_LOG_TYPES,
    BROKER_PERSISTENCE_OPTIONS,
    BROKER_QUEUE_OPTIONS,
)
from engine.wire.bounds import DEFAULT_LIMITS

PAYLOAD_LIMIT = DEFAULT_LIMITS.max_payload_bytes
# The engine's payload limit plus 4 KiB: the topic (ids up to 128 characters), the fixed
# header and MQTT v5 properties fit with room to spare.
MAX_PACKET_SIZE = PAYLOAD_LIMIT + 4096


def mosquitto_conf_text(
    out_dir: Path, port: int, source: str, bind: str | None = None, run_as: str | None = None
) -> str:
    """The broker configuration; every path absolute, inside `out_dir`."""
    d = out_dir
    process: tuple[str, ...]
    if run_as is None:
        process = (
            '# Started as root, mosquitto switches to the user "mosquitto" before it reads passwd,',
            "# acl and server.key, and this directory is its owner's alone: start mosquitto as",
            "# that owner, or re-run broker-config as root with --broker-user mosquitto.",
            "# user mosquitto",
        )
    else:
        process = (
            f"# Started as root, mosquitto switches to {run_as!r}, which broker-config let read",
            "# passwd, acl and server.key and write persist/ (ca.key and credentials.toml: not).",
            f"user {run_as}",
        )

    def section(title: str, *lines: str) -> list[str]:
        return ["", f"# -- {title} " + "-" * max(3, 84 - len(title)), *lines]

    lines = [
        f"# mosquitto configuration for tagwatch, written by `tagwatch broker-config` from {source}.",
        f"# Start:  mosquitto -c {d / 'mosquitto.conf'}",
        "# After adding subjects re-run broker-config with --force (keeps the CA and passwords),",
        "# then send mosquitto SIGHUP: it reloads passwd, acl and the certificate without",
        "# dropping clients.",
        *section("Process", *process),
        *section(
            "Who may connect and what they may touch",
            "# One set of rules for every listener, so a listener added later cannot be open.",
            "per_listener_settings false",
            "# Every client logs in with a username and password from password_file ...",
            "allow_anonymous false",
            f"password_file {d / 'passwd'}",
            "# ... and may publish and subscribe only where acl_file says.",
            f"acl_file {d / 'acl'}",
        ),
        *section(
            "Listener: MQTT over TLS only",
            "# Devices verify the broker's certificate against ca.crt. A listener without an",
            "# address after the port listens on every interface.",
            f"listener {port} {bind}" if bind else f"listener {port}",
            f"cafile {d / 'ca.crt'}",
            f"certfile {d / 'server.crt'}",
            f"keyfile {d / 'server.key'}",
            "# Clients prove who they are with username and password, not client certificates.",
            "require_certificate false",
            "# The oldest TLS version accepted; TLS 1.3 is used when the client has it.",
            "tls_version tlsv1.2",
            "# A client's id is replaced by its username, so no client can take over another's",
            "# session (the engine's queued fixes) or knock it off by reusing its client id.",
            "# Each username therefore has one connection at a time.",
            "use_username_as_clientid true",
            "# No client needs QoS 2 (tags and the engine use QoS 1); a QoS 2 publish is refused.",
            "max_qos 1",
        ),
        *section(
            "Limits: one device cannot flood the engine",
            f"# The engine dead-letters a payload over {PAYLOAD_LIMIT} bytes anyway: a packet much",
            "# larger (the payload plus topic and headers) disconnects its sender instead of",
            "# being queued for the engine.",
            f"max_packet_size {MAX_PACKET_SIZE}",
            "# A tag's QoS 0 publish reaches the engine at its subscription's QoS 1, so it is",
            "# queued while the engine is down and held back by the engine's Receive Maximum",
            "# (unacknowledged QoS 1) instead of arriving unbounded.",
            "upgrade_outgoing_qos true",
        ),
        *section(
            "Persistence: queued messages and sessions survive a broker restart",
            *BROKER_PERSISTENCE_OPTIONS,
            f"persistence_location {d / 'persist'}/",
        ),
        *section(
            "Queues: the engine's session is held while it is down (see engine/broker/process.py)",
            *BROKER_QUEUE_OPTIONS,
        ),
        *section(
            "Logging: each connection and refusal with its username",
            "log_dest stderr",
            *BROKER_LOG_TYPES,
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ),
    ]
    return "\n".join([*lines, ""])

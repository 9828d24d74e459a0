"""`GET /metrics`: the engine in Prometheus text format (prometheus-client).

A fresh registry per scrape with one collector over numbers already read (the serve loop's
counters, the store's commit histogram, the open alerts): nothing global, nothing that
outlives the request. Names and what they count are in docs/console.md."""

from __future__ import annotations

import collections
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from engine.console.view import EngineStats
from engine.wire.alerts import Alert

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Snapshot(Collector):
    def __init__(self, stats: EngineStats, online: bool, open_alerts: list[Alert]) -> None:
        self.stats, self.online, self.open_alerts = stats, online, open_alerts

    def collect(self) -> Iterator[Metric]:
        s = self.stats

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"tagwatch_{name}", doc, value=value)

        yield counter("messages_received", "MQTT messages received", s.received)
        yield counter("messages_decided", "Messages decided and committed", s.processed)
        yield counter("fixes_decided", "Fixes decided", s.fixes)
        yield counter("events_decided", "Device events decided", s.events)
        yield counter("duplicates", "Records dropped as duplicates (tag, seq)", s.duplicates)
        yield counter("dead_letters", "Input refused as dead letters", s.dead_letters)
        yield counter("alert_records", "Alert lifecycle records decided", s.alert_records)
        yield counter("alerts_published", "Alert records the broker confirmed", s.published)
        failures = CounterMetricFamily(
            "tagwatch_publish_failures",
            "Alert record publishes that failed (kept in the outbox, retried)",
            labels=["why"],
        )
        failures.add_metric(["refused"], s.publish_refused)
        failures.add_metric(["error"], s.publish_failed)
        yield failures
        yield counter("store_errors", "Commits that failed (retried)", s.store_errors)
        yield GaugeMetricFamily(
            "tagwatch_decision_lag_seconds",
            "Receive to commit, of the last batch's first message",
            value=s.lag_s,
        )
        yield GaugeMetricFamily(
            "tagwatch_queue_depth", "Messages received, not yet decided", value=s.queue_depth
        )
        yield GaugeMetricFamily(
            "tagwatch_engine_online", "1 while the engine is online", value=int(self.online)
        )
        buckets, total = s.commit_times.read()
        yield HistogramMetricFamily(
            "tagwatch_commit_seconds",
            "Store commits (one batch each), seconds",
            buckets=[("+Inf" if b == float("inf") else repr(b), n) for b, n in buckets],
            sum_value=total,
        )
        by = collections.Counter((a.kind, a.severity) for a in self.open_alerts)
        opened = GaugeMetricFamily(
            "tagwatch_open_alerts", "Alerts not closed", labels=["kind", "severity"]
        )
        for (kind, severity), n in sorted(by.items()):
            opened.add_metric([kind, severity], n)
        yield opened
        note = s.notify
        if note is None:  # no notifier running
            return
        hooks = CounterMetricFamily(
            "tagwatch_webhook_deliveries", "Webhook POSTs by result", labels=["result"]
        )
        hooks.add_metric(["ok"], note.webhook_delivered)
        hooks.add_metric(["failed"], note.webhook_failed)
        yield hooks
        yield GaugeMetricFamily(
            "tagwatch_webhook_lag_seconds",
            "Age of the oldest alert record some webhook receiver has not acknowledged",
            value=note.webhook_lag_s,
        )
        warned = CounterMetricFamily(
            "tagwatch_protected_warnings", "Warnings to protected devices by result",
            labels=["result"],
        )  # fmt: skip
        warned.add_metric(["sent"], note.warnings_sent)
        warned.add_metric(["failed"], note.warnings_failed)
        warned.add_metric(["expired"], note.warnings_expired)
        yield warned


def render(stats: EngineStats, online: bool, open_alerts: list[Alert]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(stats, online, open_alerts))
    return generate_latest(registry)

"""The monitor-facing HTTP API and console (`tagwatch serve --http`): login, sessions, the alert queue, /metrics and /healthz, served inside the engine's event loop."""

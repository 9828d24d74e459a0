"""The durable store: alert state, the evidence ledger, recovery and audit (the only place sqlite3 is used)."""

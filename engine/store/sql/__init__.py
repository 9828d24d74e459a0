"""The store's SQL under two databases: the connection every store module is written
against (conn.py: `Conn`, the errors it raises, what a `--db` target names), PostgreSQL's
adapter (pg.py: the same SQL translated, schemas as namespaces, shards) and the one store
logic both run (store.py: `SqlStore`; engine/store/sqlite.py and pgstore.py connect it)."""

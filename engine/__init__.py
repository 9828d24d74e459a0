"""tagwatch engine: ingest, pipeline, decisions, alerts and the command line."""

__version__ = "0.1.0"

"""Telemetry: every answered request and every piece of feedback, as append-only parquet files."""

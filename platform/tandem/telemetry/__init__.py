"""Telemetry: every answered request and every piece of feedback, as parquet files that
writers only add and a compactor merges per closed hour (`tandem.telemetry.compaction`)."""

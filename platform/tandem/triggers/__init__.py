"""Retrain triggers: pure policies over windows of telemetry, and the state that stops double fires."""

"""Prompts shared by the trigger tests: the task's base vocabulary, and a drifted slice."""

BASE = [f"translate: {a} {b} =>" for a in ("red", "big", "old", "new") for b in ("cat", "dog", "tree")]
DRIFTED = [f"translate: {a} {b} {c} =>" for a in ("storm", "cloud") for b in ("rain", "wind")
           for c in ("cold", "moon")]

"""A retrained challenger's way to champion: offline gate, canary, promotion, rollback."""

"""Serving: one Ray Serve LLM deployment per pool and model version, the
OpenAI-compatible ingress that routes between pools, and blue/green swaps.

Modules: `config` (the strict serving config), `pools` (LLMConfig per pool),
`routes` (the live routing table), `ingress` (HTTP), `deploy` (deploy, swap,
shut down). Importing this package imports neither Ray nor vLLM.
"""

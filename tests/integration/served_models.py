"""The models the live benches and tests serve on the local pools, from tests."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def smollm2_base_config(stack):
    """SmolLM2-135M-Instruct imported from its PyPI package, its base alone (no LoRA path on
    the engines) on both pools of apps/serve.real.yaml: (Serve config, registered name)."""
    from tandem.models.packaged import import_packaged_model
    from tandem.serve.config import load_serve_config

    model = import_packaged_model("smollm2", stack, log=lambda _: None)[0]
    return base_alone(load_serve_config(REPO / "apps" / "serve.real.yaml",
                                        {"model": f"models:/{model}@champion"})), model


def base_alone(config):
    """`config` with no adapter served and no LoRA path on its pools' engines."""
    return config.model_copy(update={"adapters": [], "pools": {
        name: pool.model_copy(update={"adapters": None})
        for name, pool in config.pools.items()}})

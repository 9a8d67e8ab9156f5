"""Serve entrypoints for Tandem's OpenAI-compatible endpoint.

`build_app(args)` is the ingress application; `build_pool_app(args)` is one pool
of the served model's current version. Args are a `tandem.serve.config.ServeAppConfig`
(the `args` of the `tandem` application in `apps/serve.*.yaml`). `tandem deploy`
calls the same library functions and also sets up the live route table that
`tandem promote` / `tandem rollback` switch.
"""

from __future__ import annotations

from typing import Any


def build_app(args: dict[str, Any]):
    """The ingress, routing between every pool of `args` at the model's current alias."""
    from tandem.registry import parse_model_uri, resolve_version
    from tandem.serve.config import ServeAppConfig
    from tandem.serve.deploy import build_ingress_application, initial_table
    from tandem.settings import load_settings

    config = ServeAppConfig.model_validate(args)
    name, version = resolve_version(config.model, load_settings().mlflow_url)
    assert parse_model_uri(config.model)[0] == name
    return build_ingress_application(config, initial_table(config, name, version))


def build_pool_app(args: dict[str, Any]):
    """One pool (`args["pool"]`) of the config in `args["tandem"]`."""
    from tandem.serve.config import ServeAppConfig
    from tandem.serve.deploy import resolve_model
    from tandem.serve.pools import build_pool_application
    from tandem.settings import load_settings

    config = ServeAppConfig.model_validate(args["tandem"])
    name, model_dir, version = resolve_model(config, load_settings())
    pool = args["pool"]
    return build_pool_application(name, model_dir, version, pool, config.pools[pool])

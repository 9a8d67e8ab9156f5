"""Serve entrypoints for Tandem's OpenAI-compatible endpoint.

`build_app(args)` is the ingress with its pools at the served model's current version;
args are a `tandem.serve.config.ServeAppConfig` (the `args` of the `tandem` application
in `apps/serve.*.yaml`). `tandem deploy` calls the same library functions but runs each
pool as its own application, the layout `tandem promote` / `tandem rollback` switch.
"""

from __future__ import annotations

from typing import Any


def build_app(args: dict[str, Any]):
    """The ingress with every pool of `args` at the model's current alias, as one application
    (what `serve deploy apps/serve.local.yaml` runs). `tandem deploy` instead runs each pool as
    its own application, which is what lets `tandem promote` swap them blue/green."""
    import ray
    from tandem.serve import routes as route_table
    from tandem.serve.config import ServeAppConfig
    from tandem.serve.deploy import (
        INGRESS_APP,
        build_ingress_application,
        initial_table,
        resolve_model,
        resolve_students,
    )
    from tandem.serve.pools import build_pool_application
    from tandem.settings import load_settings

    config = ServeAppConfig.model_validate(args)
    name, model_dir, version = resolve_model(config, load_settings())
    students = resolve_students(config, load_settings())
    table = initial_table(config, name, version, load_settings(), app=INGRESS_APP,
                          students=students, model_dir=model_dir)
    pools = [build_pool_application(name, model_dir, version, pool, config.pools[pool])
             for pool in config.teacher_pools()]
    for spec, (student, student_dir, student_version) in zip(config.students, students,
                                                             strict=True):
        pools += [build_pool_application(student, student_dir, student_version, pool,
                                         config.pools[pool]) for pool in spec.pools]
    ray.get(route_table.get_or_create(table).replace.remote(table))
    return build_ingress_application(config, table, pools)


"""A Ray Serve LLM start-up callback for pools whose model is already on disk.

Before each engine starts, Ray Serve LLM runs one Ray task per node to download the model.
For a local directory (what `tandem deploy` resolves a registry version to) that task
downloads nothing, yet it needs a fresh worker process on the pool's node: about 20 s of
every engine start on 2 cores, and under load a replacement replica has waited minutes for
that worker. Remote sources (s3://, gs://, Hugging Face ids) still take Ray's download path.
"""

from __future__ import annotations

from pathlib import Path

from ray.llm._internal.common.callbacks.base import CallbackBase

CALLBACK_CLASS = "tandem.serve.engine_start:SkipDownloadForLocalModels"


class SkipDownloadForLocalModels(CallbackBase):
    async def on_before_node_init(self) -> None:
        source = self.llm_config.model_loading_config.model_source
        if isinstance(source, str) and Path(source).is_dir():
            self.ctx.run_init_node = False

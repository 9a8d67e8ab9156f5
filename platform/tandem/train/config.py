"""The fine-tuning job's config (`jobs/configs/*.yaml`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from tandem.config import StrictConfig


class LoraSettings(StrictConfig):
    rank: PositiveInt = Field(8, description="LoRA rank r.")
    alpha: PositiveFloat = Field(16.0, description="LoRA scaling alpha.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA path.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names that get adapters.",
    )
    merge: bool = Field(
        True, description="Merge the adapters into a full copy of the base before saving. "
        "false: save and register the adapter alone, as its own registered model served on "
        "its base's engines (base_model must then be models:/NAME@ALIAS or models:/NAME/VERSION).")
    init_from: str = Field(
        "", description="With merge false: a registered adapter version (models:/NAME/VERSION) "
        "to continue training instead of fresh adapters; it must have been trained on "
        "base_model (retraining sets it to the adapter's champion).")


class FinetuneConfig(StrictConfig):
    """Everything one fine-tuning run needs; validated before any work starts."""

    registered_model: str = Field(
        "tandem-tiny", pattern=r"^[A-Za-z0-9._-]+$", description="MLflow registered model name.")
    base_model: str = Field(
        "tiny", description="'tiny' or 'tiny-qwen2' (built locally), a local HF dir, a hub id, "
        "or models:/NAME@ALIAS.")
    train_data: list[str] = Field(
        default_factory=lambda: ["builtin:train"],
        min_length=1, description="JSONL/parquet files, or builtin:SPLIT of the task dataset.")
    eval_data: list[str] = Field(
        default_factory=lambda: ["builtin:holdout"],
        min_length=1, description="Holdout files for eval loss and exact match; a "
        "checkpoint's exact match is the mean over files (a retraining run adds its "
        "validation corrections as a second file).")
    prompt_format: Literal["text", "chat"] = Field(
        "text", description="How examples reach the model (tandem.data.prompts): the task's "
        "text as is (tiny models), or one user turn in the base model's own chat template with "
        "the answer as the assistant's turn (chat models, served via /v1/chat/completions).")
    mode: Literal["full", "lora"] = Field("full", description="Full fine-tune or LoRA adapters.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="Used when mode=lora.")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="Autocast dtype for compute.")
    epochs: PositiveInt = Field(3, description="Passes over the training data.")
    learning_rate: PositiveFloat = Field(3e-3, description="AdamW peak learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    batch_size: PositiveInt = Field(16, description="Packed rows per worker per micro-step.")
    grad_accum_steps: PositiveInt = Field(1, description="Micro-steps per optimizer step.")
    seq_len: PositiveInt = Field(64, le=4096, description="Tokens per packed row.")
    seed: int = Field(0, description="Seed for init, shuffling and LoRA.")
    num_workers: PositiveInt = Field(2, description="Ray Train workers (DDP ranks).")
    use_gpu: bool = Field(False, description="NCCL on GPUs instead of gloo on CPUs.")
    torch_threads: PositiveInt = Field(1, description="Torch intra-op threads per worker.")
    max_failures: int = Field(2, ge=0, description="Worker-group restarts from the last checkpoint.")
    checkpoints_to_keep: PositiveInt = Field(2, description="Best checkpoints kept by exact match.")
    eval_max_examples: PositiveInt = Field(200, description="Rows of each eval file used for exact match.")
    eval_max_new_tokens: PositiveInt = Field(12, description="Generation budget for exact match.")
    log_every_steps: PositiveInt = Field(10, description="Progress line every N optimizer steps.")
    register_model: bool = Field(True, description="Register the best checkpoint in MLflow at the end.")
    experiment: str = Field("tandem-finetune", description="MLflow experiment name.")
    trigger: str = Field("", description="Why this run exists (lineage; set by retrain triggers).")
    trigger_window: str = Field("", description="Telemetry window that caused the trigger.")
    teacher_version: str = Field("", description="A distilled student's teacher, "
                                 "models:/NAME/VERSION (lineage; set by jobs/distill.py).")
    traffic_window: str = Field("", description="The teacher's traffic a student learned from "
                                "(lineage; set by jobs/distill.py).")
    distill_teacher: str = Field("", description="Local directory of a teacher whose token "
                                 "distributions the model also learns (logit distillation; set "
                                 "by jobs/distill.py). Empty: labels only.")
    distill_weight: float = Field(0.5, ge=0.0, le=1.0, description="Share of the loss that is "
                                  "the KL divergence to the teacher's distributions.")
    distill_temperature: PositiveFloat = Field(2.0, description="Softmax temperature of the "
                                               "distillation loss.")

    @model_validator(mode="after")
    def _adapter_needs_a_registered_base(self) -> FinetuneConfig:
        if self.registers_adapter and not self.base_model.startswith("models:/"):
            raise ValueError(
                f"lora.merge false registers an adapter, which is served on its base's engines: "
                f"base_model must be a registered model (models:/NAME@ALIAS), not "
                f"{self.base_model!r}")
        if self.lora.init_from and not self.registers_adapter:
            raise ValueError("lora.init_from continues a registered adapter: it needs "
                             "mode lora and lora.merge false")
        return self

    @property
    def registers_adapter(self) -> bool:
        """A LoRA run saved and registered unmerged."""
        return self.mode == "lora" and not self.lora.merge

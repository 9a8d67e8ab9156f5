"""How an example reaches a model: as the task's own text (`text`), or as one user turn in
the model's own chat template with the answer as the assistant's turn (`chat`).

A model is trained and judged on the text it is served. The tiny models' chat template
renders a chat request as the task's text, so they train on that text as is. A real chat
model (SmolLM2-135M-Instruct) is served through `/v1/chat/completions`, where vLLM applies
the template shipped in its directory; training packs, the training job's holdout, the
rollout's gate and the distillation job's quality scores render through here with that same
template, and the answer ends with the template's end-of-turn token (the tokenizer's EOS).

Rows keep the task's format either way (`translate: red cat =>` / ` fipo zemu`): the user
turn is the prompt without its ` =>`, as a chat request of the task asks it.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from tandem.data.task import PROMPT_SUFFIX
from tandem.errors import UserError

PromptFormat = Literal["text", "chat"]


def chat_message(prompt: str) -> str:
    """The user turn that asks a task prompt: `translate: red cat =>` -> `translate: red cat`."""
    return prompt.removesuffix(PROMPT_SUFFIX).strip()


def render_prompt(tokenizer: Any, prompt: str, prompt_format: PromptFormat) -> str:
    """The text the model sees for `prompt`, up to where its answer starts."""
    if prompt_format == "text":
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("prompt_format chat needs a tokenizer with a chat template; this base "
                        "model has none (use prompt_format: text)")
    return tokenizer.apply_chat_template([{"role": "user", "content": chat_message(prompt)}],
                                         tokenize=False, add_generation_prompt=True)


def render_completion(completion: str, prompt_format: PromptFormat) -> str:
    """The answer's text: as written for `text`, without the leading space for `chat`
    (the assistant's turn starts on a new line)."""
    return completion if prompt_format == "text" else completion.strip()


def render_examples(batch: dict[str, np.ndarray], tokenizer: Any,
                    prompt_format: PromptFormat) -> dict[str, np.ndarray]:
    """A `prompt`/`completion` batch rendered for `tokenize_and_pack`."""
    if prompt_format == "text":
        return batch
    return {"prompt": np.array([render_prompt(tokenizer, str(p), prompt_format)
                                for p in batch["prompt"]], dtype=object),
            "completion": np.array([render_completion(str(c), prompt_format)
                                    for c in batch["completion"]], dtype=object)}


def chat_template_tokens(tokenizer: Any) -> int:
    """Tokens the chat template adds around one user turn (system turn, role markers, the
    assistant's opening): what a chat request costs beyond its text. 0 without a template."""
    if not getattr(tokenizer, "chat_template", None):
        return 0
    return len(tokenizer.apply_chat_template([{"role": "user", "content": ""}], tokenize=True,
                                             add_generation_prompt=True, return_dict=False))

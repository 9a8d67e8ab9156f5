"""Prompt formats: the task's text as is, or one user turn in the model's chat template with
the answer as the assistant's turn (loss on the answer and its end-of-turn token only)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from tandem.data.packing import IGNORE_INDEX, tokenize_and_pack
from tandem.data.prompts import chat_message, render_examples, render_prompt
from tandem.errors import UserError

# SmolLM2-Instruct's template, as its GGUF file ships it
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture
def chat_tokenizer(task_tokenizer):
    tokenizer = copy.deepcopy(task_tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    tokenizer.eos_token = "<|im_end|>"
    return tokenizer


def test_a_task_prompt_is_asked_as_its_user_turn():
    assert chat_message("translate: red cat =>") == "translate: red cat"
    assert chat_message("  summarize this  ") == "summarize this"


def test_text_format_keeps_the_task_text(task_tokenizer):
    assert render_prompt(task_tokenizer, "translate: red cat =>", "text") == "translate: red cat =>"
    batch = {"prompt": np.array(["translate: red =>"], dtype=object),
             "completion": np.array([" fipo"], dtype=object)}
    assert render_examples(batch, task_tokenizer, "text") is batch


def test_chat_format_renders_the_models_template_and_trains_on_the_answer_only(chat_tokenizer):
    rendered = render_prompt(chat_tokenizer, "translate: red cat =>", "chat")
    assert rendered == ("<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n"
                        "<|im_start|>user\ntranslate: red cat<|im_end|>\n<|im_start|>assistant\n")
    batch = render_examples({"prompt": np.array(["translate: red cat =>"], dtype=object),
                             "completion": np.array([" fipo zemu"], dtype=object)},
                            chat_tokenizer, "chat")
    assert batch["completion"].tolist() == ["fipo zemu"]
    packed = tokenize_and_pack(batch, chat_tokenizer, seq_len=128)
    labels = [t for t in packed["labels"][0].tolist() if t != IGNORE_INDEX]
    answer = chat_tokenizer("fipo zemu", add_special_tokens=False)["input_ids"]
    assert labels == answer + [chat_tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_chat_format_needs_a_chat_template(task_tokenizer):
    plain = copy.deepcopy(task_tokenizer)
    plain.chat_template = None
    with pytest.raises(UserError, match="chat template"):
        render_prompt(plain, "translate: red =>", "chat")

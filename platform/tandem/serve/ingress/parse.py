"""The second stage: a completion body checked and parsed, and the model it names found.

Fields are checked against vLLM's own request models (unknown field, bad type or value,
prompt or `max_tokens` beyond the context: 400 naming the field), routing hints against
their contract (400 naming the header), and the model against the route table (404).
A streamed request always asks for the `usage` chunk: the request log needs its counts.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionRequest,
    CompletionRequest,
)
from ray.llm._internal.serve.core.ingress.utils import _sanitize_chat_completion_request
from vllm.exceptions import VLLMClientError

from tandem.routing.hints import InvalidRoutingHint, parse_routing_hints
from tandem.serve.ingress.exchange import Exchange
from tandem.serve.validation import (
    RequestError,
    accepted_fields,
    check_body,
    estimate_prompt_tokens,
    prompt_text,
    requested_max_tokens,
)

ENDPOINTS = {
    "chat": (ChatCompletionRequest, "messages", accepted_fields(ChatCompletionRequest)),
    "completions": (CompletionRequest, "prompt", accepted_fields(CompletionRequest)),
}


def model_entry(models: dict[str, Any], model: str | None) -> tuple[str, dict[str, Any]]:
    """(name, route-table entry) of the model a request names; when it names none, the only
    one served (students and adapters aside: they answer under their own names too)."""
    if model is None:
        served = [name for name, entry in models.items()
                  if "student_of" not in entry and "adapter" not in entry]
        if len(served) != 1:
            raise RequestError(400, "'model' is required when several models are served", "model")
        model = served[0]
    entry = models.get(model)
    if entry is None or not entry["pools"]:
        raise RequestError(404, f"model {model!r} is not served here; GET /v1/models lists "
                           "the served models", "model", "model_not_found")
    return model, entry


def parse_completion(kind: str, body: Any, headers, models: dict[str, Any], exchange: Exchange,
                     max_model_len: int, default_tier: str, log_text: bool,
                     chat_template_tokens: int = 0):
    """vLLM's request model of `body`; fills in what `exchange` records (the model it names,
    found in `models`; stream, features, prompt text when `log_text`). `chat_template_tokens`:
    what the served model's chat template adds to a chat request's prompt."""
    model_cls, required, accepted = ENDPOINTS[kind]
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        exchange.model = body["model"]
    check_body(body, accepted, required, max_model_len)
    try:
        hints = parse_routing_hints(headers)
    except InvalidRoutingHint as error:
        raise RequestError(400, str(error), error.header, "invalid_hint") from None
    model, _ = model_entry(models, body.get("model"))
    exchange.model = model
    exchange.stream = bool(body.get("stream"))
    if log_text:
        exchange.prompt = prompt_text(body)
    exchange.features = hints.features(estimate_prompt_tokens(body, chat_template_tokens),
                                       requested_max_tokens(body), default_tier)
    body["model"] = model
    if exchange.stream and body.get("stream_options") is None:
        body["stream_options"] = {"include_usage": True}
    try:
        parsed = model_cls.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise RequestError(400, f"invalid value for {param}: {first['msg']}", param) from None
    except VLLMClientError as error:  # vLLM's own cross-field checks
        raise RequestError(400, str(error)[:500], getattr(error, "parameter", None)) from None
    if kind == "chat":
        try:
            parsed = _sanitize_chat_completion_request(parsed)
        except ValueError as error:  # message content that is no text and no content part
            raise RequestError(400, str(error)[:500], "messages") from None
    return parsed

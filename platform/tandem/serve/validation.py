"""Request checks the ingress does before any engine sees a request.

Pure functions of the parsed body and headers, so bad input is answered with the
status and OpenAI error body of the HTTP contract (README), never a 5xx, and unit tests
need no server. Accepted fields are OpenAI's plus vLLM's sampling extensions:
exactly the fields of vLLM's own request models.
"""

from __future__ import annotations

import json
import math
from typing import Any

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}
CHARS_PER_TOKEN = 4  # prompt length estimate for routing; the engine counts exactly
TOKENS_PER_EXTRA_MESSAGE = 5  # a chat turn's role markers beyond the first turn's
DEFAULT_MAX_TOKENS = 16  # vLLM's default for completions


class RequestError(Exception):
    """A client error: HTTP status, message and the offending parameter."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after  # seconds, for 429 and 503

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.param, self.code)


def error_body(status: int, message: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code or kind}}


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:20]} is beyond a 64-bit float")
    return value


def parse_json_body(raw: bytes) -> Any:
    """The JSON body, or a 400 for what JSON or the engine cannot take: invalid UTF-8,
    NaN/Infinity, nesting deeper than the parser's stack, lone UTF-16 surrogates."""
    try:
        body = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(400, f"request body is not valid JSON ({error})",
                           code="invalid_json") from None
    except RecursionError:
        raise RequestError(400, "request body is nested too deeply", code="invalid_json") from None
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(400, "request body holds a lone UTF-16 surrogate (\\ud800-\\udfff)",
                           code="invalid_json") from None
    return body


def accepted_fields(model_cls) -> frozenset[str]:
    names = set()
    for name, field in model_cls.model_fields.items():
        names.add(name)
        if field.alias:
            names.add(field.alias)
    return frozenset(names)


def check_body(body: Any, accepted: frozenset[str], required: str, max_model_len: int) -> None:
    """Shape checks FastAPI would answer with 422 or vLLM with a 500."""
    if not isinstance(body, dict):
        raise RequestError(400, "request body must be a JSON object")
    unknown = sorted(set(body) - accepted)
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r}", unknown[0], "unknown_field")
    if body.get(required) is None:
        raise RequestError(400, f"missing required field {required!r}", required, "missing_field")
    if required == "messages" and (not isinstance(body["messages"], list) or not body["messages"]):
        raise RequestError(400, "'messages' must be a non-empty list", "messages")
    if required == "prompt" and not isinstance(body["prompt"], str | list):
        raise RequestError(400, "'prompt' must be a string or a list", "prompt")
    if "model" in body and not isinstance(body["model"], str):
        raise RequestError(400, "'model' must be a string", "model")
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise RequestError(400, f"'{name}' must be an integer", name)
        if value <= 0:
            raise RequestError(400, f"'{name}' must be at least 1, got {value}", name)
        if value > max_model_len:
            raise RequestError(400, f"'{name}' is {value}, beyond the model's context of "
                               f"{max_model_len} tokens", name, "context_length_exceeded")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise RequestError(400, "'stream' must be a boolean", "stream")


def estimate_prompt_tokens(body: dict[str, Any], chat_template_tokens: int = 0) -> int:
    """Prompt length for routing (the engine counts exactly later): the text's characters
    over CHARS_PER_TOKEN, plus, for a chat request, what the served model's chat template
    adds around a user turn (`tandem.data.prompts.chat_template_tokens`; 30+ tokens of
    system turn and role markers for SmolLM2) and a few role tokens per further message."""
    if "messages" in body:
        messages = body["messages"]
        chars = sum(len(str(message.get("content", ""))) if isinstance(message, dict) else 0
                    for message in messages)
        template = chat_template_tokens + TOKENS_PER_EXTRA_MESSAGE * max(0, len(messages) - 1)
        return max(1, template + chars // CHARS_PER_TOKEN)
    prompt = body.get("prompt", "")
    chars = len(prompt) if isinstance(prompt, str) else CHARS_PER_TOKEN * len(prompt)
    return max(1, chars // CHARS_PER_TOKEN)


def requested_max_tokens(body: dict[str, Any]) -> int:
    return int(body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS)


def prompt_text(body: dict[str, Any]) -> str:
    """The prompt as the request log keeps it: the text, or the chat messages as JSON."""
    if "messages" in body:
        return json.dumps(body["messages"], ensure_ascii=False)
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


def response_text(content: dict[str, Any]) -> str:
    """The first choice's generated text of a non-streamed completion or chat response."""
    choices = content.get("choices") or [{}]
    choice = choices[0] or {}
    if choice.get("text") is not None:
        return str(choice["text"])
    return str((choice.get("message") or {}).get("content") or "")

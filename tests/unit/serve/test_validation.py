"""Request checks of the ingress: status codes, error bodies, routing hints."""

import json

import pytest
from tandem.serve.validation import (
    RequestError,
    check_body,
    error_body,
    estimate_prompt_tokens,
    parse_json_body,
    prompt_text,
    requested_max_tokens,
    response_text,
)

FIELDS = frozenset({"model", "prompt", "messages", "max_tokens", "max_completion_tokens",
                    "stream", "temperature", "ignore_eos"})


def _status(body, required="prompt"):
    with pytest.raises(RequestError) as caught:
        check_body(body, FIELDS, required, max_model_len=128)
    return caught.value


@pytest.mark.parametrize("body, param", [
    ({"prompt": "x", "frob": 1}, "frob"),
    ({}, "prompt"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "max_tokens": True}, "max_tokens"),
    ({"prompt": "x", "max_tokens": "4"}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 129}, "max_tokens"),
    ({"prompt": "x", "stream": "yes"}, "stream"),
    ({"prompt": 3}, "prompt"),
    ({"prompt": "x", "model": 7}, "model"),
])
def test_bad_bodies_are_400_naming_the_field(body, param):
    error = _status(body)
    assert error.status == 400 and error.param == param
    assert error.body()["error"]["type"] == "invalid_request_error"


def test_chat_needs_non_empty_messages():
    assert _status({"messages": []}, "messages").param == "messages"
    check_body({"messages": [{"role": "user", "content": "hi"}]}, FIELDS, "messages", 128)


def test_non_object_body():
    assert _status([1, 2]).status == 400


def test_good_body_and_extensions_pass():
    check_body({"prompt": "x", "max_tokens": 128, "ignore_eos": True}, FIELDS, "prompt", 128)


def test_error_body_shape():
    assert error_body(413, "big") == {"error": {"message": "big", "type": "request_too_large",
                                                "param": None, "code": "request_too_large"}}
    assert error_body(404, "m", "model")["error"]["type"] == "not_found_error"


def test_routing_features_from_the_body():
    assert estimate_prompt_tokens({"prompt": "a" * 40}) == 10
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": "a" * 8}]}) == 2
    # a chat request costs what the served model's template adds around its turns
    chat = {"messages": [{"role": "system", "content": "a" * 8},
                         {"role": "user", "content": "a" * 8}]}
    assert estimate_prompt_tokens(chat, chat_template_tokens=30) == 30 + 5 + 4
    assert estimate_prompt_tokens({"prompt": "a" * 40}, chat_template_tokens=30) == 10
    assert requested_max_tokens({"max_tokens": 9}) == 9
    assert requested_max_tokens({"max_completion_tokens": 5, "max_tokens": 9}) == 5
    assert requested_max_tokens({}) == 16


def test_logged_text_of_prompts_and_responses():
    assert prompt_text({"prompt": "hi"}) == "hi"
    assert json.loads(prompt_text({"messages": [{"role": "user", "content": "hi"}]})) == [
        {"role": "user", "content": "hi"}]
    assert response_text({"choices": [{"text": "ok"}]}) == "ok"
    assert response_text({"choices": [{"message": {"content": "yo"}}]}) == "yo"


@pytest.mark.parametrize("raw, message", [
    (b"{bad", "not valid JSON"),
    (b'{"temperature": NaN}', "NaN is not a JSON number"),
    (b'{"temperature": -Infinity}', "-Infinity is not a JSON number"),
    (b'{"temperature": 1e999}', "beyond a 64-bit float"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"prompt": "\\ud800"}', "lone UTF-16 surrogate"),
    (b'{"prompt": "\xff\xfe"}', "not valid JSON"),
    (b'{"max_tokens": ' + b"9" * 5000 + b"}", "not valid JSON"),
])
def test_hostile_json_is_a_400(raw, message):
    with pytest.raises(RequestError) as error:
        parse_json_body(raw)
    assert error.value.status == 400 and message in error.value.message


def test_control_characters_and_deep_but_reasonable_json_parse():
    assert parse_json_body(b'{"prompt": "a\\u0000b\\u001f"}') == {"prompt": "a\x00b\x1f"}
    assert parse_json_body(b"[" * 50 + b"]" * 50)

"""Waiting for a freshly deployed app to answer, from tests."""

from __future__ import annotations

import time

import pytest
import requests


def first_answer(http, url: str, body: dict, timeout_s: float, what: str) -> requests.Response:
    """POST `body` to `url` until it answers 200; fail naming `what` and the last reply."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            reply = http.post(url, timeout=30, json=body)
            if reply.status_code == 200:
                return reply
            last = f"{reply.status_code} {reply.text[:200]}"
        except requests.RequestException as error:
            last = str(error)
        time.sleep(2)
    pytest.fail(f"{what} never answered: {last}")

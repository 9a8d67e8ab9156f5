"""A client's x-request-id: kept when well formed, stripped before Serve reads it otherwise,
and one id per response (the app's own wins over Serve's echo)."""

import asyncio

import pytest
from tandem.serve.request_ids import RequestIdGuard, new_request_id, well_formed


@pytest.mark.parametrize("request_id, kept", [
    ("chatcmpl-1f3a", True), ("a.b:c_d-e", True), ("x" * 128, True),
    ("x" * 129, False), ("../../etc/passwd", False), ("", False), ("a b", False),
    ("ünïcode", False), ("a\nb", False)])
def test_only_ids_of_128_safe_characters_are_well_formed(request_id, kept):
    assert well_formed(request_id) is kept


def test_made_ids_are_well_formed_and_fresh():
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(map(well_formed, ids))


def run_guarded(request_headers, response_headers):
    """What the app behind the guard saw, and the headers the client got."""
    seen, sent = {}, []

    async def app(scope, receive, send):
        seen["headers"] = scope["headers"]
        # Serve's own request-id middleware sits between the guard and the app: it echoes
        # the request's id after the app's headers.
        echo = [value for name, value in scope["headers"] if name == b"x-request-id"]
        await send({"type": "http.response.start", "status": 200,
                    "headers": response_headers + [(b"X-Request-ID", v) for v in echo]})

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "headers": request_headers}
    asyncio.run(RequestIdGuard(app)(scope, None, send))
    return seen["headers"], sent[0]["headers"]


def test_a_malformed_id_never_reaches_serve_or_the_app():
    seen, _ = run_guarded([(b"x-request-id", b"../../etc/passwd"), (b"host", b"h")], [])
    assert seen == [(b"host", b"h")]
    seen, _ = run_guarded([(b"X-Request-Id", b"y" * 300)], [])
    assert seen == []


def test_a_well_formed_id_passes_and_is_echoed_once():
    seen, out = run_guarded([(b"x-request-id", b"mine-1")], [(b"content-type", b"text/plain")])
    assert seen == [(b"x-request-id", b"mine-1")]
    assert [value for name, value in out if name.lower() == b"x-request-id"] == [b"mine-1"]


def test_the_apps_own_id_wins_over_serves_echo():
    """The ingress replaced the client's id (another tenant's): one header, the new id."""
    _, out = run_guarded([(b"x-request-id", b"taken")], [(b"x-request-id", b"fresh")])
    assert [value for name, value in out if name.lower() == b"x-request-id"] == [b"fresh"]

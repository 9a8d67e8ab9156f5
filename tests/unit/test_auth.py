"""API keys: generated once with mode 0600, overridable by the environment, two kinds."""

from __future__ import annotations

import json
import stat

import pytest
from tandem.auth import (
    ADMIN,
    INFERENCE,
    AuthError,
    authenticate,
    client_key,
    ensure_keys_file,
    load_keys,
)
from tandem.errors import UserError


def test_up_generates_a_private_key_file_once(tmp_path):
    path = ensure_keys_file(tmp_path, environ={})
    assert path == tmp_path / "secrets" / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    assert ensure_keys_file(tmp_path, environ={}) is None
    assert path.read_text() == first
    keys = load_keys(tmp_path, environ={})
    assert sorted(k.kind for k in keys) == [ADMIN, INFERENCE]
    assert client_key(tmp_path, environ={}) != client_key(tmp_path, ADMIN, environ={})


def test_no_file_is_written_when_the_environment_sets_both_keys(tmp_path):
    environ = {"TANDEM_API_KEY": "a", "TANDEM_ADMIN_KEY": "b"}
    assert ensure_keys_file(tmp_path, environ=environ) is None
    assert not (tmp_path / "secrets").exists()


def test_the_environment_replaces_the_file_keys_of_its_kind(tmp_path):
    ensure_keys_file(tmp_path, environ={})
    file_admin = client_key(tmp_path, ADMIN, environ={})
    keys = load_keys(tmp_path, environ={"TANDEM_API_KEY": "new-1, new-2"})
    assert authenticate("Bearer new-2", keys, INFERENCE).kind == INFERENCE
    assert authenticate(f"Bearer {file_admin}", keys, ADMIN).kind == ADMIN
    with pytest.raises(AuthError) as refused:
        authenticate(f"Bearer {client_key(tmp_path, environ={})}", keys, INFERENCE)
    assert refused.value.status == 401


@pytest.mark.parametrize("header, status", [(None, 401), ("", 401), ("Basic abc", 401),
                                            ("Bearer ", 401), ("Bearer wrong", 401),
                                            ("bearer infer", 200)])
def test_inference_needs_a_known_key(header, status):
    keys = load_keys_from({"TANDEM_API_KEY": "infer", "TANDEM_ADMIN_KEY": "admin"})
    if status == 200:
        assert authenticate(header, keys, INFERENCE).kind == INFERENCE
        return
    with pytest.raises(AuthError) as refused:
        authenticate(header, keys, INFERENCE)
    assert refused.value.status == status


def test_admin_endpoints_refuse_an_inference_key_and_admins_may_call_inference():
    keys = load_keys_from({"TANDEM_API_KEY": "infer", "TANDEM_ADMIN_KEY": "admin"})
    with pytest.raises(AuthError) as refused:
        authenticate("Bearer infer", keys, ADMIN)
    assert refused.value.status == 403
    assert authenticate("Bearer admin", keys, ADMIN).kind == ADMIN
    assert authenticate("Bearer admin", keys, INFERENCE).kind == ADMIN


def test_a_key_in_the_file_may_carry_its_own_rate_limit(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"api_keys": [{"name": "batch", "key": "k", "requests_per_s": 2,
                                              "burst": 3}], "admin_keys": []}))
    key = authenticate("Bearer k", load_keys(tmp_path, {"TANDEM_KEYS_FILE": str(path)}), INFERENCE)
    assert (key.name, key.requests_per_s, key.burst) == ("batch", 2, 3)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a readable JSON key file"),
    ('["k"]', "expected an object"),
    ('{"api_keys": [{"name": "x"}]}', "non-empty 'key'"),
    ('{"api_keys": [{"key": "k", "burst": -1}]}', "burst must be a positive number"),
    ('{"api_keys": [{"key": "k"}], "admin_keys": [{"key": "k"}]}', "both an inference and an admin"),
])
def test_a_bad_key_file_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_keys(tmp_path, {"TANDEM_KEYS_FILE": str(path)})


def test_a_client_without_any_key_is_told_how_to_get_one(tmp_path):
    with pytest.raises(UserError, match="TANDEM_API_KEY"):
        client_key(tmp_path, environ={})


def load_keys_from(environ):
    from pathlib import Path

    return load_keys(Path("/nonexistent"), environ)


def test_every_key_belongs_to_a_tenant(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({
        "api_keys": [{"name": "alice-app", "key": "a", "tenant": "alice"},
                     {"name": "bob", "key": "b"}],
        "admin_keys": [{"name": "ops", "key": "c"}]}))
    keys = load_keys(tmp_path, {"TANDEM_KEYS_FILE": str(path)})
    tenants = {key.name: key.tenant for key in keys}
    assert tenants == {"alice-app": "alice", "bob": "bob", "ops": "ops"}
    rotated = load_keys_from({"TANDEM_API_KEY": "old, new", "TANDEM_ADMIN_KEY": "admin"})
    assert [key.tenant for key in rotated if key.kind == INFERENCE] == ["default", "default"]


def test_a_blank_tenant_is_refused(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"api_keys": [{"name": "x", "key": "a", "tenant": " "}]}))
    with pytest.raises(UserError, match=r"api_keys\[0\]\.tenant"):
        load_keys(tmp_path, {"TANDEM_KEYS_FILE": str(path)})

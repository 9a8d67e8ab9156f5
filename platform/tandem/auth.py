"""API keys: who may call the models, who may administer them, and how often.

Two kinds of key. An inference key calls the OpenAI endpoints and posts feedback; an
admin key also promotes, rolls back and reads routing decisions (`/admin/*`). Keys come
from `TANDEM_API_KEY` / `TANDEM_ADMIN_KEY` (comma-separated, so a key can be rotated) or,
for whatever they leave unset, from the key file (`TANDEM_KEYS_FILE`, default
`$TANDEM_HOME/secrets/keys.json`, mode 0600) that `tandem up` writes on first start. The
file may give an inference key its own rate limit (`requests_per_s`, `burst`), e.g. for
a batch tenant.

Every key belongs to a tenant: whose requests, feedback and corrections they are. A key
file entry names it (`tenant`, default: the entry's `name`); the keys of
`TANDEM_API_KEY` are one tenant, `default`, since the list is one client's keys in
rotation (and `TANDEM_ADMIN_KEY`'s, `admin`).

Keys are compared as SHA-256 digests with `hmac.compare_digest`, against every known key,
so neither a key's content nor its length shows in response times.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tandem.errors import UserError

INFERENCE = "inference"
ADMIN = "admin"
KEYS_FILE = Path("secrets") / "keys.json"
DEFAULT_TENANT = "default"  # the tenant of TANDEM_API_KEY's keys


class AuthError(Exception):
    """A request without the right key: 401 (no or unknown key) or 403 (wrong kind)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ApiKey:
    """One known key, kept only as its digest."""

    name: str
    kind: str
    digest: bytes
    requests_per_s: float | None = None
    burst: float | None = None
    tenant: str = DEFAULT_TENANT


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def keys_file(home: Path, environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get("TANDEM_KEYS_FILE") or home / KEYS_FILE)


def ensure_keys_file(home: Path, environ: Mapping[str, str] | None = None) -> Path | None:
    """Write a key file with one fresh key of each kind unless one exists or the environment
    sets both keys. Returns the path when it was created (for `tandem up` to print)."""
    environ = os.environ if environ is None else environ
    path = keys_file(home, environ)
    if path.exists() or (environ.get("TANDEM_API_KEY") and environ.get("TANDEM_ADMIN_KEY")):
        return None
    content = {
        "api_keys": [{"name": "local", "key": "tdm-" + secrets.token_urlsafe(32)}],
        "admin_keys": [{"name": "local-admin", "key": "tdm-admin-" + secrets.token_urlsafe(32)}],
    }
    write_secret(path, json.dumps(content, indent=1))
    return path


def write_secret(path: Path, text: str) -> None:
    """Create `path` readable by its owner only (0600, in a 0700 directory); never overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)


def _read_file(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not a readable JSON key file ({error})") from None
    if not isinstance(content, dict):
        raise UserError(f"{path}: expected an object with api_keys and admin_keys")
    return content


def _entries(content: dict, field: str, path: Path) -> list[dict]:
    entries = content.get(field, [])
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("key"), str) and e["key"] for e in entries):
        raise UserError(f"{path}: {field} must be a list of objects with a non-empty 'key'")
    return entries


def load_keys(home: Path, environ: Mapping[str, str] | None = None) -> list[ApiKey]:
    """Every key the ingress accepts. The environment replaces the file's keys of its kind."""
    environ = os.environ if environ is None else environ
    path = keys_file(home, environ)
    content = _read_file(path)
    keys: list[ApiKey] = []
    for kind, variable, field, tenant in ((INFERENCE, "TANDEM_API_KEY", "api_keys", DEFAULT_TENANT),
                                          (ADMIN, "TANDEM_ADMIN_KEY", "admin_keys", ADMIN)):
        if environ.get(variable):
            for index, key in enumerate(k.strip() for k in environ[variable].split(",")):
                if key:
                    keys.append(ApiKey(f"{variable.lower()}-{index}", kind, _digest(key),
                                       tenant=tenant))
            continue
        for index, entry in enumerate(_entries(content, field, path)):
            rate, burst = entry.get("requests_per_s"), entry.get("burst")
            for label, value in (("requests_per_s", rate), ("burst", burst)):
                if value is not None and (not isinstance(value, int | float) or value <= 0):
                    raise UserError(f"{path}: {field}[{index}].{label} must be a positive number")
            name = str(entry.get("name") or f"{field}-{index}")
            tenant = entry.get("tenant", name)
            if not isinstance(tenant, str) or not tenant.strip():
                raise UserError(f"{path}: {field}[{index}].tenant must be a non-empty string")
            keys.append(ApiKey(name, kind, _digest(entry["key"]), rate, burst, tenant))
    admin = {k.digest for k in keys if k.kind == ADMIN}
    if any(k.kind == INFERENCE and k.digest in admin for k in keys):
        raise UserError("the same key is both an inference and an admin key; give admins their own")
    return keys


def client_key(home: Path, kind: str = INFERENCE, environ: Mapping[str, str] | None = None) -> str:
    """The first key of `kind` a local client (CLI, demo, tests) should send."""
    environ = os.environ if environ is None else environ
    variable = "TANDEM_API_KEY" if kind == INFERENCE else "TANDEM_ADMIN_KEY"
    if environ.get(variable):
        return environ[variable].split(",")[0].strip()
    path = keys_file(home, environ)
    entries = _entries(_read_file(path), "api_keys" if kind == INFERENCE else "admin_keys", path)
    if not entries:
        raise UserError(f"no {kind} key: set {variable} or run `tandem up` to create {path}")
    return entries[0]["key"]


def authenticate(authorization: str | None, keys: list[ApiKey], needed: str) -> ApiKey:
    """The key behind an `Authorization: Bearer KEY` header, if it may do `needed`.
    An admin key may also call inference; an inference key may not administer."""
    if not authorization:
        raise AuthError(401, "missing API key: send 'Authorization: Bearer KEY'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "malformed Authorization header: expected 'Bearer KEY'")
    digest = _digest(token.strip())
    found = None
    for key in keys:  # no early exit: every request costs the same comparisons
        if hmac.compare_digest(digest, key.digest):
            found = key
    if found is None:
        raise AuthError(401, "invalid API key")
    if needed == ADMIN and found.kind != ADMIN:
        raise AuthError(403, "this endpoint needs an admin key (TANDEM_ADMIN_KEY)")
    return found

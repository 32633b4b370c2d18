"""`--web.config.file`: TLS and basic auth for the HTTP endpoints, as Prometheus exporters do it.

The file has the exporter-toolkit format (the one node_exporter and Prometheus itself read)::

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # or VerifyClientCertIfGiven
      client_ca_file: ca.crt                         # with a client_auth_type that verifies
      min_version: TLS12                             # optional: TLS12 (default) or TLS13
    basic_auth_users:
      prometheus: $2y$10$...                         # bcrypt hash (htpasswd -nBC 10)

Only these keys are supported; any other is rejected rather than silently ignored, because
an ignored security setting is worse than a refused one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from exporter.config import ConfigError

_TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version")
_CLIENT_AUTH: dict[str, ssl.VerifyMode] = {
    # exporter-toolkit's names for what Python's ssl module can do. RequestClientCert and
    # RequireAnyClientCert (accept a certificate without verifying it) are not among them.
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_MIN_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_BCRYPT = re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")
UNPROTECTED_PATHS = frozenset({"/healthz"})
"""A liveness probe (e.g. Docker's HEALTHCHECK) needs no credentials; it reveals nothing."""


@dataclass(frozen=True)
class WebSecurity:
    tls: ssl.SSLContext | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    """User name -> bcrypt hash; empty: no basic auth."""


def load_web_config(path: str) -> WebSecurity:
    """Parse and check the file (certificates are loaded now, so a bad one fails at start)."""
    place = f"--web.config.file {path}"
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(place, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    except yaml.YAMLError:
        raise ConfigError(place, "invalid YAML") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(place, "the top level must be a mapping")
    _only(raw, ("tls_server_config", "basic_auth_users"), "")
    base = Path(path).parent
    tls = _tls(raw.get("tls_server_config"), base) if raw.get("tls_server_config") else None
    return WebSecurity(tls=tls, users=_users(raw.get("basic_auth_users")))


def _only(section: Mapping[Any, Any], allowed: Iterable[str], prefix: str) -> None:
    for key in section:
        if key not in allowed:
            raise ConfigError(
                f"--web.config.file: {prefix}{key}",
                f"unsupported key (supported: {', '.join(allowed)})",
            )


def _tls(section: object, base: Path) -> ssl.SSLContext:
    if not isinstance(section, dict):
        raise ConfigError("--web.config.file: tls_server_config", "expected a mapping")
    _only(section, _TLS_KEYS, "tls_server_config.")

    def file(key: str) -> str:
        value = section.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"--web.config.file: tls_server_config.{key}", "required")
        return str(base / value)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    version = section.get("min_version", "TLS12")
    if version not in _MIN_VERSIONS:
        raise ConfigError(
            "--web.config.file: tls_server_config.min_version", f"one of {', '.join(_MIN_VERSIONS)}"
        )
    context.minimum_version = _MIN_VERSIONS[version]
    try:
        context.load_cert_chain(file("cert_file"), file("key_file"))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "--web.config.file: tls_server_config", f"cannot load cert_file/key_file: {exc}"
        ) from None
    auth_type = section.get("client_auth_type", "NoClientCert")
    if auth_type not in _CLIENT_AUTH:
        raise ConfigError(
            "--web.config.file: tls_server_config.client_auth_type",
            f"one of {', '.join(_CLIENT_AUTH)}",
        )
    mode = _CLIENT_AUTH[auth_type]
    if mode == ssl.CERT_NONE and section.get("client_ca_file"):
        # As exporter-toolkit: a CA without a policy would silently verify nothing.
        raise ConfigError(
            "--web.config.file: tls_server_config.client_ca_file",
            "set client_auth_type too, or client certificates are not checked",
        )
    if mode != ssl.CERT_NONE:
        try:
            context.load_verify_locations(file("client_ca_file"))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "--web.config.file: tls_server_config.client_ca_file", f"cannot load: {exc}"
            ) from None
    context.verify_mode = mode
    return context


def _users(section: object) -> dict[str, bytes]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError("--web.config.file: basic_auth_users", "expected a mapping")
    users = {}
    for name, hashed in section.items():
        place = f"--web.config.file: basic_auth_users.{name}"
        if not isinstance(name, str) or not isinstance(hashed, str):
            raise ConfigError(place, "expected user: bcrypt-hash")
        if not _BCRYPT.fullmatch(hashed):
            raise ConfigError(place, "not a bcrypt hash (make one with htpasswd -nBC 10)")
        users[name] = hashed.encode()
    return users


class BasicAuth:
    """WSGI middleware: HTTP basic auth against bcrypt hashes.

    bcrypt is slow on purpose (~50 ms at cost 10); a successful check is remembered by a hash
    of the credentials, so a scraper that sends the same credentials every 15 s pays it once.
    """

    def __init__(self, app: Callable[..., Any], users: Mapping[str, bytes]) -> None:
        self._app = app
        self._users = dict(users)
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()
        # Checked for unknown users, at the highest configured cost, so that answering "no
        # such user" takes as long as "wrong password".
        cost = max((int(h.split(b"$")[2]) for h in users.values()), default=10)
        self._dummy = bcrypt.hashpw(b"dummy", bcrypt.gensalt(cost))

    def _allowed(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        fingerprint = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        with self._lock:
            if any(hmac.compare_digest(fingerprint, known) for known in self._verified):
                return True
        # An unknown user still costs a bcrypt check, so timing does not tell users apart.
        hashed = self._users.get(user, self._dummy)
        try:
            matches = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:  # bcrypt refuses passwords over 72 bytes
            return False
        if not matches or user not in self._users:
            return False
        with self._lock:
            self._verified.add(fingerprint)
        return True

    def runs_inline(self, environ: dict[str, Any]) -> bool:
        """For exporter/serve/httpserver.py: no bcrypt check may run on its event loop. Cheap are a
        path without credentials, a header that is refused without a check, and credentials
        that were checked before; then it is as the wrapped app says."""
        inner = getattr(self._app, "runs_inline", None)
        if inner is None or not inner(environ):
            return False
        if environ.get("PATH_INFO") in UNPROTECTED_PATHS:
            return True
        scheme, _, encoded = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "basic":
            return True
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return True
        fingerprint = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        with self._lock:
            return any(hmac.compare_digest(fingerprint, known) for known in self._verified)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") in UNPROTECTED_PATHS or self._allowed(
            environ.get("HTTP_AUTHORIZATION", "")
        ):
            return self._app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [
                ("WWW-Authenticate", 'Basic realm="whatsapp-exporter"'),
                ("Content-Type", "text/plain"),
            ],
        )
        return [b"Unauthorized\n"]

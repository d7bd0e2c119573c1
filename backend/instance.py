"""Who the backend trusts: one Label Studio, one token, and the projects connected to it.

Trust model (README "Security"):

* **One Label Studio.** Outbound requests go to ``LABEL_STUDIO_URL`` with
  ``LABEL_STUDIO_API_KEY`` when the admin set them; ``/setup``'s ``hostname`` and
  ``access_token`` are then ignored. Without them (the quick start), the first ``/setup``
  whose hostname and token work together (``GET /api/current-user/whoami`` answers 200) pins
  that Label Studio and token in ``MODEL_DIR/instance.json`` (trust on first use); a later
  ``/setup`` naming another host is refused with 403 and nothing is sent there. A new token
  for the pinned host replaces the pinned one only when the pinned one stopped working and the
  new one works. Only ``http``/``https`` URLs without credentials; redirects never followed.
* **Connected projects only.** ``/setup`` is a hint. Before its first write into a project,
  a round proves that the project's ML backend in Label Studio is this backend
  (:func:`verify_connection`): it sets a one-time nonce in the ML backend's ``extra_params``
  through Label Studio's API; Label Studio then calls that backend's ``/setup`` with it, and
  only this backend's ``/setup`` can record the nonce it never saw before. The label config is
  then read from Label Studio, not from ``/setup``.
* **Signed webhooks.** Label Studio's own webhook subscription for the connected ML backend
  gets the header :data:`backend.webhooks.SIGNATURE_HEADER` = HMAC(``MODEL_DIR/secret``,
  project), so webhooks are authenticated with or without basic auth; once a project's
  subscription is signed, unsigned webhooks for it are refused (but ``START_TRAINING``, which
  Label Studio sends without the subscription's headers, which only schedules a paced round).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlparse

from backend.store import atomic_write_bytes

log = logging.getLogger("studio_al.instance")

#: extra_params key of the connection challenge.
CHALLENGE_KEY = "studio_al_verify"
#: Re-check an established connection (the ML backend still exists) this often.
RECHECK_S = 600.0
#: Most projects that called /setup but are not verified yet (more: 429).
MAX_UNVERIFIED = 100


class TrustError(Exception):
    """A request asks the backend to trust something it must not; ``status`` is the HTTP
    answer (403 for another host, 400 for a malformed URL)."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status


def normalize_url(url: object) -> str:
    """``scheme://host[:port][/path]`` without a trailing slash; raises TrustError unless an
    http(s) URL without credentials, query or fragment."""
    if not isinstance(url, str) or len(url) > 2048:
        raise TrustError("hostname must be an http(s) URL", 400)
    p = urlparse(url.strip())
    if p.scheme not in ("http", "https") or not p.hostname:
        raise TrustError(f"hostname must be an http(s) URL, got {url[:100]!r}", 400)
    if p.username or p.password or p.query or p.fragment:
        raise TrustError("hostname must not carry credentials, a query or a fragment", 400)
    return f"{p.scheme}://{p.netloc.lower()}{p.path.rstrip('/')}"


def _read_json(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (FileNotFoundError, ValueError):
        return {}


def _write_private(path: str, obj: dict) -> None:
    atomic_write_bytes(path, json.dumps(obj, separators=(",", ":")).encode())
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)


class Instance:
    """The trusted Label Studio of this backend (see the module docstring)."""

    def __init__(self, settings, root: str):
        self.settings = settings
        self.root = root
        self._lock = threading.Lock()

    @property
    def _pin_path(self) -> str:
        return os.path.join(self.root, "instance.json")

    def secret(self) -> bytes:
        """The webhook signing secret (``MODEL_DIR/secret``, created once, mode 0600)."""
        path = os.path.join(self.root, "secret")
        with self._lock:
            try:
                with open(path, "rb") as fh:
                    value = fh.read().strip()
                if len(value) >= 32:
                    return value
            except FileNotFoundError:
                pass
            value = secrets.token_hex(32).encode()
            atomic_write_bytes(path, value)
            os.chmod(path, 0o600)
            return value

    def credentials(self) -> tuple[str, str] | None:
        """``(url, token)`` for outbound requests, or None when not known yet."""
        pin = _read_json(self._pin_path)
        url = self.settings.label_studio_url or pin.get("url")
        token = self.settings.label_studio_api_key or pin.get("token")
        return (url, token) if url and token else None

    def public_url(self) -> str | None:
        """The Label Studio URL for links shown to the admin: http(s) only, credentials
        removed."""
        creds = self.credentials()
        url = self.settings.label_studio_url or (creds[0] if creds else None)
        p = urlparse(url or "")
        if p.scheme not in ("http", "https") or not p.hostname:
            return None
        port = f":{p.port}" if p.port else ""
        return f"{p.scheme}://{p.hostname}{port}{p.path.rstrip('/')}"

    def accept_setup(self, hostname: object, token: object, check) -> str:
        """Decide what a ``/setup`` may change; returns a short verdict for the log.

        ``check(url, token) -> bool | None`` asks Label Studio whether the pair works (None:
        unreachable; only called
        for a pair the backend does not trust yet, and never for another host than the pinned
        or configured one). Raises :class:`TrustError` when the setup names another host.
        """
        s = self.settings
        if s.label_studio_url and s.label_studio_api_key:
            return "configured"
        token = token if isinstance(token, str) and 0 < len(token) <= 512 else None
        with self._lock:
            pin = _read_json(self._pin_path)
            if s.label_studio_url:
                url = normalize_url(s.label_studio_url)
            else:
                if hostname in (None, ""):
                    return "no hostname"
                url = normalize_url(hostname)
                if pin.get("url") and pin["url"] != url:
                    raise TrustError(f"this backend is bound to another Label Studio "
                                     f"({pin['url']}); set LABEL_STUDIO_URL to change it")
            if token is None or (pin.get("url") == url and pin.get("token") == token):
                return "unchanged"
            if pin.get("token") and pin.get("url") == url and check(url, pin["token"]):
                return "kept pinned token"
            works = check(url, token)
            if works is None:
                raise TrustError(f"Label Studio at {url} (the hostname sent to /setup) cannot be "
                                 "reached from the backend; set LABEL_STUDIO_URL and "
                                 "LABEL_STUDIO_API_KEY", 422)
            if not works:
                raise TrustError("Label Studio did not accept the token sent to /setup "
                                 f"(GET {url}/api/current-user/whoami)")
            _write_private(self._pin_path, {"url": url, "token": token, "pinned_at": time.time()})
            log.warning("event=label_studio_pinned url=%s", url)
            return "pinned"


# --------------------------------------------------------------------------- connections
@dataclass
class Connection:
    """A project's verified connection (``<project>/connection.json``, written by rounds)."""

    ml_backend: int
    url: str
    verified_at: float
    label_config: str
    webhook_signed: bool = False

    @classmethod
    def load(cls, store, project_id: int) -> "Connection | None":
        d = _read_json(os.path.join(store.project_dir(project_id), "connection.json"))
        try:
            return cls(int(d["ml_backend"]), str(d["url"]), float(d["verified_at"]),
                       str(d["label_config"]), bool(d.get("webhook_signed")))
        except (KeyError, TypeError, ValueError):
            return None

    def save(self, store, project_id: int) -> None:
        _write_private(os.path.join(store.project_dir(project_id), "connection.json"),
                       self.__dict__)


def challenge_path(store, project_id: int) -> str:
    return os.path.join(store.project_dir(project_id), "challenge")


def record_challenge(store, project_id: int, extra_params: object) -> None:
    """Called by ``/setup``: remember a nonce Label Studio passed in ``extra_params``."""
    if isinstance(extra_params, dict):
        nonce = extra_params.get(CHALLENGE_KEY)
        if isinstance(nonce, str) and 16 <= len(nonce) <= 128 and \
                os.path.isdir(store.project_dir(project_id)):
            atomic_write_bytes(challenge_path(store, project_id), nonce.encode())


def _seen(store, project_id: int) -> str | None:
    try:
        with open(challenge_path(store, project_id), "rb") as fh:
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return None


class NotConnected(RuntimeError):
    """The project has no ML backend in Label Studio that is this backend."""


def verify_connection(store, project_id: int, client, secret: bytes) -> Connection:
    """The project's :class:`Connection`, proved (see the module docstring) or re-checked;
    raises :class:`NotConnected`. Signs the project's webhook subscription on the way."""
    conn = Connection.load(store, project_id)
    if conn is not None and time.time() - conn.verified_at < RECHECK_S:
        return conn
    backends = client.list_ml_backends(project_id)
    mine = next((b for b in backends if conn is not None and b.get("id") == conn.ml_backend), None)
    if mine is None:
        mine = _challenge(store, project_id, client, backends)
    project = client.get_project(project_id)
    conn = Connection(int(mine["id"]), str(mine.get("url") or ""), time.time(),
                      str(project.get("label_config") or ""))
    conn.webhook_signed = sign_webhooks(client, project_id, conn.url, secret)
    conn.save(store, project_id)
    return conn


def _patch_fields(backend: dict, project_id: int, extra_params) -> dict:
    """A PATCH of an ML backend that Label Studio 1.23 validates: its serializer re-checks
    ``url`` and ``project`` with ``/health`` and ``/setup`` calls, so both are sent as they
    are; with basic auth, an empty password keeps the stored one."""
    fields = {"url": backend.get("url"), "project": project_id, "extra_params": extra_params}
    if backend.get("auth_method") == "BASIC_AUTH":
        fields.update(auth_method="BASIC_AUTH", basic_auth_user=backend.get("basic_auth_user"),
                      basic_auth_pass="")
    return fields


def _challenge(store, project_id: int, client, backends: list[dict]) -> dict:
    for backend in backends[:5]:
        nonce = secrets.token_hex(16)
        extra = backend.get("extra_params") if isinstance(backend.get("extra_params"), dict) \
            else {}
        try:
            client.update_ml_backend(backend["id"], **_patch_fields(
                backend, project_id, {**extra, CHALLENGE_KEY: nonce}))
        except Exception as exc:  # noqa: BLE001 - e.g. another backend that is down
            log.warning("event=challenge_failed project=%s ml_backend=%s error=%r", project_id,
                        backend.get("id"), str(exc)[:300])
            continue
        matched = _seen(store, project_id) == nonce
        client.update_ml_backend(backend["id"], **_patch_fields(backend, project_id,
                                                                extra or None))
        if matched:
            log.info("event=project_connected project=%s ml_backend=%s", project_id,
                     backend["id"])
            return backend
    raise NotConnected(f"project {project_id}: none of its {len(backends)} ML backend(s) in "
                       "Label Studio is this studio-al backend; nothing is written to it")


def sign_webhooks(client, project_id: int, ml_url: str, secret: bytes) -> bool:
    """Add the signature header to the project's webhook that targets ``<ml_url>/webhook``;
    True when it carries it."""
    from backend.webhooks import SIGNATURE_HEADER, signature
    target = ml_url.rstrip("/") + "/webhook"
    value = signature(secret, project_id)
    signed = False
    for hook in client.list_webhooks(project_id):
        if str(hook.get("url") or "").rstrip("/") != target:
            continue
        headers = hook.get("headers") if isinstance(hook.get("headers"), dict) else {}
        if headers.get(SIGNATURE_HEADER) != value:
            client.update_webhook(hook["id"], headers={**headers, SIGNATURE_HEADER: value})
        signed = True
    return signed

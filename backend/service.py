"""What the backend does, without HTTP: :class:`BackendService`.

The API blueprint (``backend.api``) reads a request, calls one method of the service and
answers its dict as JSON; the dashboard calls :meth:`BackendService.status`. A client error is
raised as :class:`BadRequest` (answered ``{"error": message}`` with its status).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from typing import Any, Callable

from backend import project_status, training
from backend.instance import MAX_UNVERIFIED, Connection, Instance, TrustError, record_challenge
from backend.jobs import JobRunner
from backend.labelconfig import LabelConfig, LabelConfigError, parse_label_config
from backend.settings import Settings, redact_url
from backend.store import Store
from backend.webhooks import (IGNORED_ACTIONS, KNOWN_ACTIONS, SIGNATURE_HEADER, signature_ok,
                              webhook_event)

log = logging.getLogger("studio_al.app")

MODEL_CLASS = "StudioAL"
UNTRAINED = training.UNTRAINED
#: Priority score of a task the serving version has not ranked (served after ranked ones).
UNRANKED_SCORE = 1.0


class BadRequest(Exception):
    """A client error: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


_ID_RE = re.compile(r"[0-9]{1,18}")


def parse_project_id(value: Any, field: str = "project") -> int:
    """``12``, ``"12"``, ``"12.1700000000"`` (Label Studio's /setup form) or ``{"id": 12}``;
    ASCII digits only, at most 18 of them."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool):
        value = None
    if isinstance(value, int) and 0 < value < 10 ** 18:
        return value
    if isinstance(value, str) and len(value) <= 64:
        head = value.split(".", 1)[0].strip()
        if _ID_RE.fullmatch(head) and int(head) > 0:
            return int(head)
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    raise BadRequest(f"{field!r} must be a project id (a positive integer, \"<id>.<timestamp>\" "
                     f"or an object with \"id\"), got {shown}")


def _parse_config(xml: str) -> LabelConfig:
    try:
        return parse_label_config(xml)
    except LabelConfigError as exc:
        raise BadRequest(f"unusable label config: {exc}", 422) from None


def make_room_for_new_project(store: Store) -> None:
    """Keep at most :data:`MAX_UNVERIFIED` projects that called ``/setup`` but were never
    proved connected: forget the oldest one (a forged ``/setup`` flood cannot fill the disk
    or the descriptor table, nor lock out a real project)."""
    waiting = [p for p in store.projects() if Connection.load(store, p) is None]
    if len(waiting) < MAX_UNVERIFIED:
        return

    def age(pid: int) -> float:
        try:
            return os.path.getmtime(os.path.join(store.project_dir(pid), "project.json"))
        except OSError:
            return 0.0
    for pid in sorted(waiting, key=age)[:len(waiting) - MAX_UNVERIFIED + 1]:
        log.warning("event=unverified_project_forgotten project=%s", pid)
        store.forget_project(pid)


class LivePredictor:
    """Labels for tasks the serving version did not rank (labeled or new tasks), predicted
    in the web process with the stored model: ``(label_names, confidences)`` or None.

    None for a torch classifier (the web process never imports torch: such tasks wait for
    the next round) and when the version has no stored model.
    """

    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self._lock = threading.Lock()  # a fitted featurizer/estimator is shared by threads

    def __call__(self, project_id: int, version: str, cfg: LabelConfig, texts: list[str]):
        from al_engine.registry import TORCH_CLASSIFIERS
        if self.settings.classifier in TORCH_CLASSIFIERS:
            return None
        bundle = self.store.load_model(project_id, version)
        if not bundle:
            return None
        import numpy as np
        from al_engine.data import Dataset
        ds = Dataset.from_texts(texts, None, target_labels=list(bundle["labels"]),
                                multi_label=bundle["multi_label"])
        with self._lock:
            proba = bundle["clf"].predict_proba(ds)
        if list(bundle["labels"]) != list(cfg.labels) or bundle["multi_label"] != cfg.multi_label:
            cfg = LabelConfig(cfg.from_name, cfg.to_name, cfg.text_field,
                              tuple(bundle["labels"]), bundle["multi_label"])
        return training.predicted_labels(proba, cfg, np.arange(len(texts)))


class BackendService:
    """The backend's operations: setup, predict, webhook, versions, status, recovery.

    Parameters
    ----------
    settings : Settings
    store : Store
        ``MODEL_DIR``: project configs, webhook events, audit log, model versions.
    runner : JobRunner
        Where webhooks and setups queue rounds.
    instance : Instance
        The trusted Label Studio (``/setup`` may pin it).
    client_factory : callable ``(url, api_key) -> client`` or None
        Client used to check a token sent to ``/setup`` (tests inject a fake); default a
        :class:`backend.labelstudio.LabelStudioClient` with a 2 s timeout and no retry.
    """

    def __init__(self, settings: Settings, store: Store, runner: JobRunner, instance: Instance,
                 client_factory: Callable[[str, str], Any] | None = None):
        self.settings = settings
        self.store = store
        self.runner = runner
        self.instance = instance
        self.client_factory = client_factory
        self._live = LivePredictor(settings, store)

    # ------------------------------------------------------------------ health
    def runner_health(self) -> dict | None:
        """The runner's ``health()`` (Redis mode), else None."""
        probe = getattr(self.runner, "health", None)
        return probe() if callable(probe) else None

    def health(self) -> dict:
        """``GET /health``. ``status`` stays UP while Redis is down (predictions are still
        served from MODEL_DIR and webhooks recorded); ``degraded`` tells monitoring the queue
        is unavailable."""
        extra = self.runner_health()
        body = {"status": "UP", "model_class": MODEL_CLASS,
                "mode": "redis" if self.settings.redis_url else "embedded",
                "degraded": bool(extra and extra["degraded"])}
        if extra is not None:
            body["redis"] = extra["redis"]
        return body

    # ------------------------------------------------------------------ setup
    def token_works(self, url: str, token: str) -> bool | None:
        """Does Label Studio at ``url`` accept ``token``? None when it cannot be reached
        (2 s, no retry, no redirect followed)."""
        from backend.labelstudio import LabelStudioClient
        try:
            client = self.client_factory(url, token) if self.client_factory is not None \
                else LabelStudioClient(url, token, timeout=2.0, retries=0)
            client.whoami()
            return True
        except Exception as exc:  # noqa: BLE001 - LabelStudioError or a fake's error
            status = getattr(exc, "status", None)
            log.warning("event=token_check_failed url=%s status=%s", redact_url(url), status)
            return None if status is None else False

    def setup(self, body: dict) -> dict:
        """``POST /setup``: store the project's label config, maybe pin Label Studio
        (:meth:`Instance.accept_setup`), record a connection challenge; a new project gets
        a round (which proves its connection and orders its queue)."""
        project_id = parse_project_id(body.get("project"))
        schema = body.get("schema")
        if not isinstance(schema, str):
            raise BadRequest("'schema' must be the project's label config (an XML string)")
        for field in ("hostname", "access_token"):
            if body.get(field) is not None and not isinstance(body.get(field), str):
                raise BadRequest(f"{field!r} must be a string")
        try:
            verdict = self.instance.accept_setup(body.get("hostname"), body.get("access_token"),
                                                 self.token_works)
        except TrustError as exc:
            log.warning("event=setup_refused project=%s reason=%r", project_id, str(exc))
            raise BadRequest(str(exc), exc.status) from None
        old = self.store.load_project(project_id)
        if old is None or old.get("label_config") != schema or "parsed" not in old:
            parsed = _parse_config(schema).to_dict()
            if old is None:
                make_room_for_new_project(self.store)
            self.store.save_project(project_id, {"project": project_id, "label_config": schema,
                                                 "parsed": parsed, "updated_at": time.time()})
        record_challenge(self.store, project_id, body.get("extra_params"))
        if old is None:
            log.info("event=setup project=%s trust=%s", project_id, verdict)
            self.runner.submit(project_id, "setup")
        return {"model_version": self.store.current(project_id) or UNTRAINED}

    def project_config(self, project_id: int) -> LabelConfig | None:
        """The label config read from Label Studio by the connection check, else the one
        ``/setup`` sent (used only to format answers until the project is verified)."""
        conn = Connection.load(self.store, project_id)
        if conn is not None:
            with contextlib.suppress(LabelConfigError):
                return parse_label_config(conn.label_config)
        config = self.store.load_project(project_id)
        if not config or "parsed" not in config:
            return None
        return LabelConfig.from_dict(config["parsed"])

    # ------------------------------------------------------------------ predict
    def predict(self, body: dict) -> dict:
        """``POST /predict``: the ranked answer of the serving version for each task
        (exactly what was pushed to Label Studio), a live prediction with
        :data:`UNRANKED_SCORE` for a task it did not rank, an empty result without a model."""
        tasks = _checked_tasks(body.get("tasks"))
        project = body.get("project")
        if project is None and tasks:
            project = tasks[0].get("project")
        project_id = parse_project_id(project)
        cfg = self.project_config(project_id)
        if cfg is None and isinstance(body.get("label_config"), str):
            cfg = _parse_config(body["label_config"])
        if cfg is None:
            raise BadRequest(f"project {project_id} is not set up: call /setup first", 409)
        version = self.store.current(project_id)
        return {"results": self._results(project_id, version, cfg, tasks),
                "model_version": version or UNTRAINED}

    def _results(self, project_id: int, version: str | None, cfg: LabelConfig,
                 tasks: list[dict]) -> list[dict]:
        ranking = self.store.load_ranking(project_id, version) if version else None
        entries = ranking.lookup([t["id"] for t in tasks]) if ranking is not None \
            else [None] * len(tasks)
        results: list[dict | None] = [None] * len(tasks)
        live_rows, live_texts = [], []
        for i, (task, entry) in enumerate(zip(tasks, entries)):
            if entry is not None:
                results[i] = {"result": cfg.result(entry.labels, entry.confidence),
                              "score": entry.score, "model_version": version}
                continue
            text = (task.get("data") or {}).get(cfg.text_field)
            if version and isinstance(text, str):
                live_rows.append(i)
                live_texts.append(text)
            else:
                results[i] = {"result": [], "score": UNRANKED_SCORE,
                              "model_version": version or UNTRAINED}
        if live_rows:
            out = self._live(project_id, version, cfg, live_texts)
            for j, i in enumerate(live_rows):
                result = [] if out is None else cfg.result(out[0][j], round(float(out[1][j]), 6))
                results[i] = {"result": result, "score": UNRANKED_SCORE,
                              "model_version": version}
        return results

    # ------------------------------------------------------------------ webhook
    def webhook(self, body: dict, signed: str | None) -> dict:
        """``POST /webhook``: record the event (durably, before answering) and queue a round
        when it may change the ranking. ``signed`` is the :data:`SIGNATURE_HEADER` sent."""
        action = body.get("action")
        if not isinstance(action, str) or not action:
            raise BadRequest("'action' must be a non-empty string")
        if action not in KNOWN_ACTIONS:
            raise BadRequest(f"unknown action {action!r}; "
                             f"known: {', '.join(sorted(KNOWN_ACTIONS))}")
        project = _webhook_project(body)
        project_id = parse_project_id(project)
        if signed is not None and not signature_ok(self.instance.secret(), project_id, signed):
            raise BadRequest(f"invalid {SIGNATURE_HEADER} for project {project_id}", 401)
        if self.store.load_project(project_id) is None:  # never set up here: nothing is stored
            return {"status": "ignored", "action": action,
                    "detail": f"project {project_id} is not connected to this backend"}
        conn = Connection.load(self.store, project_id)
        if signed is None and not self.settings.basic_auth and conn is not None \
                and conn.webhook_signed and action != "START_TRAINING":
            raise BadRequest(f"this project's webhooks are signed: header {SIGNATURE_HEADER} "
                             "required", 401)
        event = webhook_event(action, project_id, body)
        handled = "ignored" if action in IGNORED_ACTIONS else "train"
        if action == "PROJECT_UPDATED":
            # our own PATCH of the project's model version sends this too: only a label
            # config that differs from the verified one is worth a round (which re-reads it
            # from Label Studio: the body is only a hint)
            sent = project.get("label_config") if isinstance(project, dict) else None
            event["config_changed"] = isinstance(sent, str) and (
                conn is None or sent != conn.label_config)
            handled = "train" if event["config_changed"] else "recorded"
        self.store.append_event(project_id, {**event, "handled": handled,
                                             "signed": signed is not None})
        if handled != "train":
            return {"status": handled, "action": action}
        return {"status": self.runner.submit(project_id, action), "action": action}

    # ------------------------------------------------------------------ versions and status
    def versions(self, project_id: int | None = None) -> dict:
        """``GET /versions``: one project's versions and the serving one, or every version."""
        if project_id is not None:
            return {"versions": self.store.versions(project_id),
                    "current": self.store.current(project_id)}
        return {"versions": sorted({v for p in self.store.projects()
                                    for v in self.store.versions(p)})}

    def status(self, project_id: int) -> dict:
        """One project's status: what ``GET /status`` and the dashboard show."""
        return project_status.project_status(
            self.store, self.settings, project_id,
            set_up=self.project_config(project_id) is not None,
            job=self.runner.status(project_id))

    def status_report(self, project_id: int | None = None) -> dict:
        """``GET /status``: one project's status (404 when unknown), or the settings, the
        queue and every project."""
        degraded = bool((self.runner_health() or {}).get("degraded"))
        if project_id is not None:
            if project_id not in self.store.projects():
                raise BadRequest(f"unknown project {project_id}", 404)
            return {**self.status(project_id), "degraded": degraded}
        return {"settings": self.settings.public(), "queue": self.runner_health(),
                "degraded": degraded,
                "projects": {str(p): self.status(p) for p in self.store.projects()}}

    # ------------------------------------------------------------------ start-up
    def recover(self) -> list[int]:
        """Queue a ``recovery`` round for each set-up project with webhook events newer than
        its last successful round (retrains requested before a restart); returns them.
        Called once by the entry point (``backend.wsgi``), not by :func:`create_app`."""
        queued = []
        for project_id in self.store.projects():
            last = self.store.last_audit(project_id, "ok")
            trained_upto = (last or {}).get("events_upto", 0) or 0
            pending = [e for e in self.store.events(project_id)
                       if e.get("seq", 0) > trained_upto and e.get("handled") == "train"]
            if pending and self.project_config(project_id) is not None:
                log.info("event=recovery project=%s pending_events=%d", project_id, len(pending))
                self.runner.submit(project_id, "recovery")
                queued.append(project_id)
        return queued


def _checked_tasks(tasks: Any) -> list[dict]:
    """``/predict``'s ``tasks``: objects with an integer ``id`` and an optional ``data``
    object."""
    if not isinstance(tasks, list):
        raise BadRequest("'tasks' must be a list of tasks")
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or isinstance(task.get("id"), bool) \
                or not isinstance(task.get("id"), int):
            raise BadRequest(f"tasks[{i}] must be an object with an integer 'id'")
        if task.get("data") is not None and not isinstance(task.get("data"), dict):
            raise BadRequest(f"tasks[{i}].data must be an object")
    return tasks


def _webhook_project(body: dict) -> Any:
    """The webhook's project (an id or an object), else the one its annotation or task
    names."""
    project = body.get("project")
    if project is None:
        for key in ("annotation", "task"):
            if isinstance(body.get(key), dict) and body[key].get("project") is not None:
                return body[key]["project"]
    return project

"""Label Studio REST client (plain ``requests``), verified against Label Studio 1.23.2.

Only the calls the backend needs. Every request sends ``Authorization: Token <key>`` (Label
Studio's legacy API token). Connection errors, timeouts and 5xx answers are retried with
exponential backoff (``backoff * 2**attempt`` seconds) - except a read timeout of a POST or
DELETE, which may still be executing in Label Studio (a retry would duplicate predictions or
queue behind its database lock); a 4xx answer is never retried. Failures raise
:class:`LabelStudioError` with the status and the body.

Redirects are never followed (a 3xx raises): requests go to the configured Label Studio only.

What each call costs Label Studio 1.23.2 (SQLite, ``label-studio start``), measured on a
100,000-task project (``benchmarks/results/ls_op_costs_100000_sqlite.md``), and how the backend uses it:

* ``GET /api/tasks`` (data manager) costs ~1.5 ms per listed task and is one read transaction,
  during which SQLite makes every writer (an annotator's submit) wait: the backend lists tasks
  in small keyset pages (:meth:`LabelStudioClient.list_tasks`), once per task, and keeps its
  own copy (``backend.mirror``). An empty page (``id > max``) costs ~0.08 s.
* ``POST /api/predictions``: ~0.1 s per prediction whatever the project size; a bulk
  ``import/predictions`` recounts every task of the project per request (13-16 s at 10k
  tasks), so only the head of the ranking is pushed, one prediction per request.
* ``DELETE /api/projects/{id}/model-versions/``: ~25-40 ms per prediction inside ONE
  transaction; 20 predictions ~0.2 s. Never retried after a timeout (it may still run).
* ``PATCH /api/projects/{id}``: ~0.6 s at 100k (the answer aggregates over every task).
"""
from __future__ import annotations

import json
import time
from typing import Any, Iterable

import requests

from backend.logs import get_logger

log = get_logger("labelstudio")

__all__ = ["LabelStudioClient", "LabelStudioError"]

#: Annotation keys kept from Label Studio's task listings.
ANNOTATION_KEYS = ("id", "result", "was_cancelled", "ground_truth", "updated_at", "completed_by")


class LabelStudioError(RuntimeError):
    """A Label Studio request failed (4xx, 5xx after retries, unreachable, or bad JSON).

    Attributes
    ----------
    status : int or None
        HTTP status of the last answer; ``None`` when no answer arrived (connection error, timeout).
    body : str
        The body of the last answer (truncated to 2,000 characters), or the transport error text.
    """

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "OPTIONS"})


def _annotation(a: dict) -> dict:
    ann = {k: a.get(k) for k in ANNOTATION_KEYS}
    ann["result"] = ann["result"] or []
    ann["was_cancelled"] = bool(ann["was_cancelled"])
    ann["ground_truth"] = bool(ann["ground_truth"])
    if isinstance(ann["completed_by"], dict):  # some serialisers nest the user
        ann["completed_by"] = ann["completed_by"].get("id")
    return ann


def _task(t: dict) -> dict:
    return {"id": int(t["id"]), "data": t.get("data") or {},
            "annotations": [_annotation(a) for a in t.get("annotations") or []
                            if isinstance(a, dict)]}


class _Retryable(Exception):
    """One attempt failed in a way worth another (no answer, or a 5xx)."""

    def __init__(self, status: int | None, body: str, field: str = "") -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        #: the ``key=value`` of the warning logged for the attempt
        self.field = field


def _decode(method: str, path: str, resp: requests.Response) -> Any:
    """The JSON body of an answer below 500 (``None`` if empty); a redirect or 4xx raises."""
    if 300 <= resp.status_code < 400:
        # never follow: a redirect could point anywhere (SSRF); Label Studio's API
        # does not redirect the calls we make
        raise LabelStudioError(f"{method} {path} -> HTTP {resp.status_code} redirect to "
                               f"{resp.headers.get('Location', '?')[:200]!r} (not followed)",
                               status=resp.status_code, body="")
    if resp.status_code >= 400:
        raise LabelStudioError(f"{method} {path} -> HTTP {resp.status_code}: {resp.text[:300]}",
                               status=resp.status_code, body=resp.text[:2000])
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError as exc:
        raise LabelStudioError(f"{method} {path} -> HTTP {resp.status_code}: body is not JSON",
                               status=resp.status_code, body=resp.text[:2000]) from exc


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class LabelStudioClient:
    """Client for one Label Studio instance.

    Parameters
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:8080`` (a trailing slash is ignored).
    api_key : str
        Legacy API token (``Authorization: Token <api_key>``).
    timeout : float, default=30.0
        Seconds per HTTP request (connect and read).
    retries : int, default=3
        Extra attempts after the first one, only for connection errors, timeouts and 5xx.
    backoff : float, default=0.5
        Base delay in seconds; attempt ``k`` (0-based) waits ``backoff * 2**k`` before retrying.
    """

    #: Task ids per filtered listing in :meth:`fetch_tasks_by_id` (~90 URL characters each).
    ids_per_request: int = 50

    def __init__(self, url: str, api_key: str, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.5) -> None:
        if not url or not isinstance(url, str):
            raise ValueError("url: a Label Studio base URL is required, e.g. http://127.0.0.1:8080")
        if not api_key or not isinstance(api_key, str):
            raise ValueError("api_key: a Label Studio API token is required")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries!r}")
        if backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {backoff!r}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        #: requests sent and seconds spent waiting for answers (every attempt counts)
        self.request_count = 0
        self.request_seconds = 0.0
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"Token {api_key}",
                                      "Accept": "application/json"})

    def __repr__(self) -> str:  # never print the token
        return f"LabelStudioClient(url={self.url!r})"

    # ------------------------------------------------------------------ transport
    def _request(self, method: str, path: str, *, params: dict | None = None,
                 json: Any = None, timeout: float | None = None) -> Any:
        """Send one request with retries; return the decoded JSON body (``None`` if empty)."""
        failure = _Retryable(None, "")
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                resp = self._attempt(method, path, params, json, timeout or self.timeout)
            except _Retryable as exc:
                failure = exc
                log.warning("labelstudio request failed method=%s path=%s attempt=%d %s",
                            method, path, attempt + 1, exc.field)
                continue
            return _decode(method, path, resp)
        where = f"HTTP {failure.status}" if failure.status is not None else "no answer"
        raise LabelStudioError(f"{method} {path} failed after {self.retries + 1} attempts "
                               f"({where}): {failure.body[:300]}", status=failure.status,
                               body=failure.body)

    def _attempt(self, method: str, path: str, params: dict | None, body: Any,
                 timeout: float) -> requests.Response:
        """One request (counted and timed); a failure worth another attempt raises
        :class:`_Retryable`, an answer below 500 is returned as is."""
        started = time.perf_counter()
        self.request_count += 1
        try:
            resp = self._session.request(method, self.url + path, params=params, json=body,
                                         timeout=timeout, allow_redirects=False)
        except (requests.ConnectionError, requests.Timeout) as exc:
            text = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, requests.ReadTimeout) and method not in _IDEMPOTENT:
                # the server got the request and may still be executing it: retrying a
                # POST/DELETE would duplicate predictions or hit Label Studio's DB lock
                raise LabelStudioError(f"{method} {path}: no answer within {timeout:.0f}s (not "
                                       f"retried: the request may still be running in Label "
                                       f"Studio)", status=None, body=text) from exc
            raise _Retryable(None, text, f"error={type(exc).__name__}") from exc
        finally:
            self.request_seconds += time.perf_counter() - started
        if resp.status_code >= 500:
            raise _Retryable(resp.status_code, resp.text[:2000], f"status={resp.status_code}")
        return resp

    # ------------------------------------------------------------------ API
    def get_project(self, project_id: int) -> dict:
        """``GET /api/projects/{id}``: the project (``label_config``, ``model_version``, ``sampling``...)."""
        return self._request("GET", f"/api/projects/{int(project_id)}")

    def list_tasks(self, project_id: int, after_id: int = 0, limit: int = 250) -> list[dict]:
        """One keyset page of tasks: the first ``limit`` tasks with ``id > after_id``, ordered
        by id, as ``[{"id", "data"}]`` (no annotations).

        Keyset paging (an id filter, always page 1) costs Label Studio the same for every page,
        where page numbers cost an ever larger OFFSET; and a page is one read transaction, so
        keeping ``limit`` small keeps Label Studio's SQLite database free for annotators
        (measured at 100k tasks: 250 tasks ~0.4 s, 1,000 tasks ~1.5 s).
        """
        flt = [{"filter": "filter:tasks:id", "operator": "greater", "type": "Number",
                "value": int(after_id)}]
        return [{"id": int(t["id"]), "data": t.get("data") or {}}
                for t in self._dm_page(int(project_id), flt, limit)]

    def list_annotated_tasks(self, project_id: int, after_id: int = 0, limit: int = 100
                             ) -> list[dict]:
        """One keyset page of the tasks with at least one non-cancelled annotation and
        ``id > after_id``, with their annotations: ``[{"id", "data", "annotations"}]``."""
        flt = [{"filter": "filter:tasks:id", "operator": "greater", "type": "Number",
                "value": int(after_id)},
               {"filter": "filter:tasks:total_annotations", "operator": "greater",
                "type": "Number", "value": 0}]
        return [_task(t) for t in self._dm_page(int(project_id), flt, limit, all_fields=True)]

    def _dm_page(self, pid: int, filters: list[dict], limit: int, conjunction: str = "and",
                 all_fields: bool = False) -> list[dict]:
        """Page 1 of a filtered data-manager listing ordered by id."""
        query = {"filters": {"conjunction": conjunction, "items": filters}, "ordering": ["tasks:id"]}
        params = {"project": pid, "page_size": int(limit), "page": 1, "resolve_uri": "false",
                  "query": json.dumps(query, separators=(",", ":"))}
        if all_fields:
            params["fields"] = "all"
        body = self._request("GET", "/api/tasks", params=params, timeout=max(self.timeout, 120.0))
        return list((body or {}).get("tasks") or [])

    def fetch_tasks_by_id(self, project_id: int, task_ids: Iterable[int]) -> list[dict]:
        """The given tasks read fresh with their annotations: ``[{"id", "data", "annotations"}]``.

        Filtered data-manager listings (``tasks:id = ...`` or-ed, at most
        :attr:`ids_per_request` ids per request so the URL stays far below Label Studio's
        limit); unlike ``GET /api/tasks/{id}`` this never makes Label Studio call ``/predict``.
        Ids that are not tasks of the project are simply absent from the answer.
        """
        ids = sorted({int(t) for t in task_ids})
        out = []
        for chunk in _chunks(ids, self.ids_per_request):
            filters = [{"filter": "filter:tasks:id", "operator": "equal", "type": "Number",
                        "value": t} for t in chunk]
            out += [_task(t) for t in self._dm_page(int(project_id), filters, len(chunk),
                                                    conjunction="or", all_fields=True)]
        return out

    def import_predictions(self, project_id: int, predictions: list[dict],
                           chunk_size: int = 1000) -> int:
        """Bulk-create predictions with ``POST /api/projects/{id}/import/predictions``.

        ``predictions`` = ``[{"task": id, "result": [...], "score": float, "model_version": str}]``,
        sent in chunks of ``chunk_size``. Returns the number created (sum of ``created``).
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
        created = 0
        for chunk in _chunks(list(predictions), chunk_size):
            body = self._request("POST", f"/api/projects/{int(project_id)}/import/predictions",
                                 json=chunk, timeout=max(self.timeout, 300.0))
            created += int((body or {}).get("created", 0))
        return created

    def create_prediction(self, prediction: dict) -> int:
        """Create ONE prediction with ``POST /api/predictions``; returns its id.

        ``prediction`` = ``{"task": id, "result": [...], "score": float, "model_version": str}``.
        On Label Studio 1.23 this costs about 0.1 s whatever the project's size, while every
        ``import/predictions`` request recomputes the counters of every task of the project
        (13 s on a 10k-task project holding 10k predictions, even for one prediction), so the
        head of a ranking goes in this way and the bulk import is kept for the rest.
        """
        body = self._request("POST", "/api/predictions", json=prediction)
        return int((body or {}).get("id", 0))

    def update_project(self, project_id: int, answer_fields: str | None = None,
                       **fields: Any) -> dict:
        """``PATCH /api/projects/{id}`` with ``fields`` (e.g. ``model_version``, ``sampling``).

        ``answer_fields="id"`` asks for only those fields in the answer (``?include=``): Label
        Studio then skips the per-task counts it otherwise aggregates for the answer (at 10k
        tasks the PATCH takes 0.08 s instead of 0.14 s)."""
        if not fields:
            raise ValueError("update_project: give at least one field to change")
        params = {"include": answer_fields} if answer_fields else None
        return self._request("PATCH", f"/api/projects/{int(project_id)}", params=params,
                             json=fields)

    def delete_model_version(self, project_id: int, model_version: str) -> int:
        """Delete every prediction of ``model_version``; returns how many were deleted."""
        if not model_version:
            raise ValueError("model_version: a non-empty version name is required")
        body = self._request("DELETE", f"/api/projects/{int(project_id)}/model-versions/",
                             json={"model_version": model_version}, timeout=max(self.timeout, 600.0))
        return int((body or {}).get("deleted_predictions", 0))

    def model_versions(self, project_id: int) -> dict[str, int]:
        """``GET /api/projects/{id}/model-versions``: ``{version: number of predictions}``."""
        body = self._request("GET", f"/api/projects/{int(project_id)}/model-versions")
        return {str(k): int(v) for k, v in (body or {}).items()}

    # ------------------------------------------------------------------ connection checks
    def whoami(self) -> dict:
        """``GET /api/current-user/whoami``: the user of the token (checks URL + token)."""
        return self._request("GET", "/api/current-user/whoami")

    def list_ml_backends(self, project_id: int) -> list[dict]:
        """``GET /api/ml?project=ID``: the project's ML backends (Label Studio calls
        ``/health`` and ``/setup`` of each while answering)."""
        body = self._request("GET", "/api/ml", params={"project": int(project_id)})
        return [b for b in (body or []) if isinstance(b, dict)]

    def update_ml_backend(self, backend_id: int, **fields: Any) -> dict:
        """``PATCH /api/ml/{id}`` (Label Studio calls the backend's ``/setup`` meanwhile)."""
        return self._request("PATCH", f"/api/ml/{int(backend_id)}", json=fields)

    def list_webhooks(self, project_id: int) -> list[dict]:
        """``GET /api/webhooks?project=ID``."""
        body = self._request("GET", "/api/webhooks", params={"project": int(project_id)})
        return [w for w in (body or []) if isinstance(w, dict)]

    def update_webhook(self, webhook_id: int, **fields: Any) -> dict:
        """``PATCH /api/webhooks/{id}`` (e.g. ``headers``)."""
        return self._request("PATCH", f"/api/webhooks/{int(webhook_id)}", json=fields)

"""Label Studio REST client (plain ``requests``), verified against Label Studio 1.23.2.

Only the calls the backend needs. Every request sends ``Authorization: Token <key>`` (Label
Studio's legacy API token). Connection errors, timeouts and 5xx answers are retried with
exponential backoff (``backoff * 2**attempt`` seconds) - except a read timeout of a POST or
DELETE, which may still be executing in Label Studio (a retry would duplicate predictions or
queue behind its database lock); a 4xx answer is never retried. Failures raise
:class:`LabelStudioError` with the status and the body.

Measured against Label Studio 1.23.2 (SQLite, ``label-studio start``) on a 10,000-task project,
on a shared 2-core machine (load average 5-12, so absolute numbers are pessimistic):

* listing tasks costs ~3 ms per task whatever the endpoint: ``GET /api/tasks`` (data manager)
  10k in 32 s, ``fields=all`` (with annotations AND every prediction) 85 s, the JSON export
  ``/api/projects/{id}/export?download_all_tasks=true`` 43 s (and it writes a copy of the export
  into Label Studio's data dir on every call), ``/api/projects/{id}/tasks/`` 379 s (N+1 queries).
  Hence :meth:`LabelStudioClient.fetch_tasks` caches task texts per process and lists only new
  tasks and annotated tasks on later calls (a filtered data-manager page costs ~1 s).
* ``POST /api/projects/{id}/import/predictions``: ~3 ms per prediction (bulk_create + counters).
* ``DELETE /api/projects/{id}/model-versions/``: ~25-40 ms per prediction (a pre_delete signal
  per row updates its task), inside ONE transaction: on SQLite every other write to Label
  Studio waits ("database is locked") while a large version is deleted. The DELETE is therefore
  never retried after a timeout (the first one is still running) and gets a long timeout.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Iterable

import requests

log = logging.getLogger(__name__)

__all__ = ["LabelStudioClient", "LabelStudioError"]

#: Annotation keys kept by :meth:`LabelStudioClient.fetch_tasks`.
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
_TASK_DATA_CACHE: dict[tuple[str, int], dict[int, dict]] = {}
_CACHE_LOCK = threading.Lock()


def _annotation(a: dict) -> dict:
    ann = {k: a.get(k) for k in ANNOTATION_KEYS}
    ann["result"] = ann["result"] or []
    ann["was_cancelled"] = bool(ann["was_cancelled"])
    ann["ground_truth"] = bool(ann["ground_truth"])
    if isinstance(ann["completed_by"], dict):  # some serialisers nest the user
        ann["completed_by"] = ann["completed_by"].get("id")
    return ann


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

    #: Tasks per page when listing tasks (the data manager has no maximum by default).
    page_size: int = 2000

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
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"Token {api_key}",
                                      "Accept": "application/json"})

    def __repr__(self) -> str:  # never print the token
        return f"LabelStudioClient(url={self.url!r})"

    # ------------------------------------------------------------------ transport
    def _request(self, method: str, path: str, *, params: dict | None = None,
                 json: Any = None, timeout: float | None = None) -> Any:
        """Send one request with retries; return the decoded JSON body (``None`` if empty)."""
        url = self.url + path
        last_status: int | None = None
        last_body = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                resp = self._session.request(method, url, params=params, json=json,
                                             timeout=timeout or self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_status, last_body = None, f"{type(exc).__name__}: {exc}"
                if isinstance(exc, requests.ReadTimeout) and method not in _IDEMPOTENT:
                    # the server got the request and may still be executing it: retrying a
                    # POST/DELETE would duplicate predictions or hit Label Studio's DB lock
                    raise LabelStudioError(f"{method} {path}: no answer within "
                                           f"{timeout or self.timeout:.0f}s (not retried: the request "
                                           f"may still be running in Label Studio)",
                                           status=None, body=last_body) from exc
                log.warning("labelstudio request failed method=%s path=%s attempt=%d error=%s",
                            method, path, attempt + 1, type(exc).__name__)
                continue
            if resp.status_code >= 500:
                last_status, last_body = resp.status_code, resp.text[:2000]
                log.warning("labelstudio request failed method=%s path=%s attempt=%d status=%d",
                            method, path, attempt + 1, resp.status_code)
                continue
            if resp.status_code >= 400:
                raise LabelStudioError(
                    f"{method} {path} -> HTTP {resp.status_code}: {resp.text[:300]}",
                    status=resp.status_code, body=resp.text[:2000])
            if not resp.content:
                return None
            try:
                return resp.json()
            except ValueError as exc:
                raise LabelStudioError(f"{method} {path} -> HTTP {resp.status_code}: body is not JSON",
                                       status=resp.status_code, body=resp.text[:2000]) from exc
        where = f"HTTP {last_status}" if last_status is not None else "no answer"
        raise LabelStudioError(f"{method} {path} failed after {self.retries + 1} attempts ({where}): "
                               f"{last_body[:300]}", status=last_status, body=last_body)

    # ------------------------------------------------------------------ API
    def get_project(self, project_id: int) -> dict:
        """``GET /api/projects/{id}``: the project (``label_config``, ``model_version``, ``sampling``...)."""
        return self._request("GET", f"/api/projects/{int(project_id)}")

    def fetch_tasks(self, project_id: int) -> list[dict]:
        """Every task of the project with its annotations.

        Returns ``[{"id", "data", "annotations": [{"id", "result", "was_cancelled",
        "ground_truth", "updated_at", "completed_by"}, ...]}, ...]`` ordered by task id.

        Label Studio serialises about 300-1000 tasks per second with its data manager API (and
        the JSON export is no faster and writes a copy of the export to its disk every time), so a
        10k-task project costs tens of seconds to list. Task texts do not change, annotations
        do: this method keeps the tasks' ``data`` in a per-process cache (keyed by Label Studio
        URL and project) and per call fetches

        1. the project (``task_number``),
        2. only the tasks with an id above the highest cached one (new imports),
        3. every task that has an annotation (``total_annotations > 0`` or
           ``cancelled_annotations > 0``), with its annotations, fresh every time (so updated and
           deleted annotations are seen).

        If the number of tasks then differs from ``task_number`` (tasks were deleted), the cache
        is rebuilt with a full listing. All listings use ``GET /api/tasks`` (data manager) with
        filters, ordered by id, paged by ``page_size``.
        """
        pid = int(project_id)
        project = self.get_project(pid)
        expected = project.get("task_number")
        key = (self.url, pid)
        with _CACHE_LOCK:
            cached = _TASK_DATA_CACHE.get(key)
            data = dict(cached) if cached is not None else None
        if data is None:
            data = self._list_task_data(pid, min_id=None)
        else:
            data.update(self._list_task_data(pid, min_id=max(data, default=0)))
        if expected is not None and len(data) != int(expected):
            log.info("labelstudio task cache rebuilt project=%d cached=%d task_number=%s",
                     pid, len(data), expected)
            data = self._list_task_data(pid, min_id=None)
        annotated = self._list_annotated(pid)
        for tid, (tdata, _) in annotated.items():
            data[tid] = tdata
        with _CACHE_LOCK:
            _TASK_DATA_CACHE[key] = dict(data)
        return [{"id": tid, "data": data[tid],
                 "annotations": annotated[tid][1] if tid in annotated else []}
                for tid in sorted(data)]

    def forget_tasks(self, project_id: int | None = None) -> None:
        """Drop the cached task data (of one project, or of every project of this URL)."""
        with _CACHE_LOCK:
            for key in list(_TASK_DATA_CACHE):
                if key[0] == self.url and (project_id is None or key[1] == int(project_id)):
                    del _TASK_DATA_CACHE[key]

    def _dm_pages(self, pid: int, filters: list[dict], conjunction: str = "and",
                  all_fields: bool = False) -> Iterable[dict]:
        """Yield every task of a filtered data-manager listing, ordered by id."""
        query = {"filters": {"conjunction": conjunction, "items": filters}, "ordering": ["tasks:id"]}
        params = {"project": pid, "page_size": self.page_size, "resolve_uri": "false",
                  "query": json.dumps(query)}
        if all_fields:
            params["fields"] = "all"
        seen = 0
        page = 1
        while True:
            body = self._request("GET", "/api/tasks", params={**params, "page": page},
                                 timeout=max(self.timeout, 300.0))
            tasks = (body or {}).get("tasks") or []
            yield from tasks
            seen += len(tasks)
            total = (body or {}).get("total")
            if not tasks or len(tasks) < self.page_size or (total is not None and seen >= int(total)):
                return
            page += 1

    def _list_task_data(self, pid: int, min_id: int | None) -> dict[int, dict]:
        filters = [] if min_id is None else [
            {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": int(min_id)}]
        return {int(t["id"]): t.get("data") or {} for t in self._dm_pages(pid, filters)}

    def _list_annotated(self, pid: int) -> dict[int, tuple[dict, list[dict]]]:
        filters = [{"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number",
                    "value": 0},
                   {"filter": "filter:tasks:cancelled_annotations", "operator": "greater",
                    "type": "Number", "value": 0}]
        out = {}
        for t in self._dm_pages(pid, filters, conjunction="or", all_fields=True):
            out[int(t["id"])] = (t.get("data") or {}, [_annotation(a) for a in t.get("annotations") or []])
        return out

    def fetch_tasks_by_id(self, project_id: int, task_ids: Iterable[int]) -> list[dict]:
        """The given tasks (same shape as :meth:`fetch_tasks`), read fresh with their annotations.

        One filtered data-manager listing (``tasks:id = ...`` or-ed), so it does not trigger a
        ``/predict`` call the way ``GET /api/tasks/{id}`` does for a task without predictions.
        """
        ids = sorted({int(t) for t in task_ids})
        if not ids:
            return []
        filters = [{"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": t}
                   for t in ids]
        return [{"id": int(t["id"]), "data": t.get("data") or {},
                 "annotations": [_annotation(a) for a in t.get("annotations") or []]}
                for t in self._dm_pages(int(project_id), filters, conjunction="or", all_fields=True)]

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

    def update_project(self, project_id: int, **fields: Any) -> dict:
        """``PATCH /api/projects/{id}`` with ``fields`` (e.g. ``model_version``, ``sampling``)."""
        if not fields:
            raise ValueError("update_project: give at least one field to change")
        return self._request("PATCH", f"/api/projects/{int(project_id)}", json=fields)

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

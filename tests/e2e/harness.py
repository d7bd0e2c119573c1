"""Start a real Label Studio and our real backend as processes (used by the e2e tests and benchmarks).

Nothing here imports Label Studio: it runs in its own venv at ``<repo>/.e2e-cache/ls-venv``
(``python3 -m venv`` + ``pip install label-studio==1.23.2`` on first use, about 1-2 minutes).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import requests

REPO = Path(__file__).resolve().parents[2]
LS_VERSION = "1.23.2"
LS_VENV = REPO / ".e2e-cache" / "ls-venv"
LS_TOKEN = "e2e0123456789abcdef0123456789abcdef0123"
LS_USER = "admin@example.com"
LS_PASSWORD = "admin12345"
# CI clones the repo with shared/ beside it: <repo>/../shared/data
DATA_DIR = Path(os.environ.get("STUDIO_AL_DATA_DIR", REPO.parent / "shared" / "data"))

# The environment Label Studio needs to accept a local ML backend and our legacy token.
# docker-compose.yml sets the same variables (tests/e2e/test_docker_files.py checks it).
LS_ENV = {
    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
    "ML_BLOCK_LOCAL_IP": "false",
    "SSRF_PROTECTION_ENABLED": "false",
    "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
    "DJANGO_DB": "sqlite",
    "LABEL_STUDIO_ANONYMIZE_TELEMETRY": "true",
    "COLLECT_ANALYTICS": "false",
    "PYTHONUNBUFFERED": "1",
    # no error reporting to sentry.io (no network here; each report retries DNS inside requests)
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
}

#: The command the backend container runs (docker-compose.yml and Dockerfile use it too).
BACKEND_SERVE_ARGS = ["serve", "--bind"]


class HarnessError(RuntimeError):
    """Label Studio or the backend could not be installed or started; the message says why."""


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _cache_lock():
    """Serialise installs/template creation between concurrent test sessions."""
    path = REPO / ".e2e-cache" / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_ls_venv(venv: Path = LS_VENV, timeout: float = 900.0) -> Path:
    """Return the ``label-studio`` executable, installing label-studio==1.23.2 if missing."""
    exe = venv / "bin" / "label-studio"
    marker = venv / f".installed-{LS_VERSION}"
    if exe.exists() and marker.exists():
        return exe
    with _cache_lock():
        return _install_ls_venv(venv, exe, timeout)


def _install_ls_venv(venv: Path, exe: Path, timeout: float) -> Path:
    marker = venv / f".installed-{LS_VERSION}"
    if exe.exists() and marker.exists():
        return exe
    if venv.exists():
        log(f"removing incomplete Label Studio venv {venv}")
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    logfile = venv.parent / "ls-install.log"
    log(f"installing label-studio=={LS_VERSION} into {venv} (first run only, ~1-2 min; log {logfile})")
    t0 = time.monotonic()
    with open(logfile, "w") as out:
        for cmd in ([sys.executable, "-m", "venv", str(venv)],
                    [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check",
                     f"label-studio=={LS_VERSION}"]):
            left = timeout - (time.monotonic() - t0)
            try:
                rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=max(left, 1)).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            if rc != 0:
                tail = logfile.read_text(errors="replace").splitlines()[-15:]
                raise HarnessError(f"installing Label Studio failed ({' '.join(cmd[:3])}... -> {rc}); "
                                   f"last lines of {logfile}:\n" + "\n".join(tail))
            log(f"  {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd[:3]))} done "
                f"after {time.monotonic() - t0:.0f}s")
    if not exe.exists():
        raise HarnessError(f"pip install finished but {exe} does not exist; see {logfile}")
    marker.write_text(LS_VERSION)
    return exe


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, logfile: Path | None = None,
              ok: Callable[[requests.Response], bool] = lambda r: r.status_code == 200) -> float:
    """Poll ``url`` until ``ok(response)``; return the seconds waited. Bounded; fails fast if proc dies."""
    t0 = time.monotonic()
    delay = 0.05
    while True:
        if proc is not None and proc.poll() is not None:
            tail = logfile.read_text(errors="replace").splitlines()[-30:] if logfile and logfile.exists() else []
            raise HarnessError(f"process for {url} exited with {proc.returncode} during start-up; "
                               f"last lines of {logfile}:\n" + "\n".join(tail))
        try:
            if ok(requests.get(url, timeout=2)):
                return time.monotonic() - t0
        except requests.RequestException:
            pass
        if time.monotonic() - t0 > timeout:
            tail = logfile.read_text(errors="replace").splitlines()[-30:] if logfile and logfile.exists() else []
            raise HarnessError(f"{url} not healthy after {timeout:.0f}s; last lines of {logfile}:\n" + "\n".join(tail))
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def stop_process(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group we started, then SIGKILL after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    logfile: Path
    started_in: float
    extra: dict = field(default_factory=dict)
    on_stop: Callable[[], None] | None = None  # e.g. drop the server's database

    def stop(self) -> None:
        stop_process(self.proc)
        if self.on_stop is not None:
            self.on_stop()


LS_TEMPLATE = REPO / ".e2e-cache" / f"ls-template-{LS_VERSION}"


def _launch_ls(exe: Path, data_dir: Path, port: int, db_env: dict | None = None) -> tuple[subprocess.Popen, Path]:
    logfile = data_dir / "ls.log"
    env = {**os.environ, **LS_ENV, "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), **(db_env or {})}
    cmd = [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), "--username", LS_USER, "--password", LS_PASSWORD,
           "--user-token", LS_TOKEN, "--enable-legacy-api-token", "--log-level", "WARNING"]
    with open(logfile, "a") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    return proc, logfile


def _wait_ls(url: str, proc: subprocess.Popen, logfile: Path, timeout: float) -> float:
    took = wait_http(url + "/health", timeout, proc, logfile, ok=lambda r: r.ok and "UP" in r.text)
    # the token must work (trap: legacy tokens disabled for an org created without the flag)
    r = requests.get(url + "/api/current-user/whoami", headers={"Authorization": f"Token {LS_TOKEN}"},
                     timeout=30)
    if r.status_code != 200:
        raise HarnessError(f"Label Studio is up but the legacy token is refused: {r.status_code} {r.text[:200]}")
    return took


def ensure_ls_template(timeout: float = 420.0) -> Path:
    """A migrated, empty Label Studio data dir (user + legacy token), made once and copied per run.

    A fresh data dir runs ~200 migrations (20-40 s idle, minutes on a loaded machine); copying
    a migrated one makes each start a few seconds. The org is created with legacy tokens enabled.
    """
    marker = LS_TEMPLATE / ".complete"
    if marker.exists():
        return LS_TEMPLATE
    exe = ensure_ls_venv()
    with _cache_lock():
        if marker.exists():  # made by a concurrent session meanwhile
            return LS_TEMPLATE
        return _make_template(exe, marker, timeout)


def _make_template(exe: Path, marker: Path, timeout: float) -> Path:
    tmp = LS_TEMPLATE.with_name(LS_TEMPLATE.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    port = free_port()
    log(f"creating the Label Studio data-dir template (migrations; first run only) in {LS_TEMPLATE}")
    proc, logfile = _launch_ls(exe, tmp, port)
    try:
        took = _wait_ls(f"http://127.0.0.1:{port}", proc, logfile, timeout)
    finally:
        stop_process(proc)
    log(f"  template ready after {took:.1f}s")
    (tmp / "ls.log").unlink(missing_ok=True)
    shutil.rmtree(LS_TEMPLATE, ignore_errors=True)
    tmp.rename(LS_TEMPLATE)
    marker.write_text(LS_VERSION)
    return LS_TEMPLATE


def _postgres_database(host: str = "127.0.0.1", user: str = "postgres") -> dict:
    """Create a fresh, empty PostgreSQL database (``createdb``) for one Label Studio run and
    return the environment that points Label Studio at it (``DJANGO_DB=default`` + ``POSTGRE_*``)."""
    name = f"studio_al_ls_{os.getpid()}_{int(time.time())}"
    proc = subprocess.run(["createdb", "-h", host, "-U", user, name], capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(f"createdb {name} on {host} failed: {proc.stderr.strip()}")
    return {"DJANGO_DB": "default", "POSTGRE_HOST": host, "POSTGRE_PORT": "5432",
            "POSTGRE_USER": user, "POSTGRE_PASSWORD": "", "POSTGRE_NAME": name}


def _drop_postgres_database(db_env: dict) -> None:
    subprocess.run(["dropdb", "--if-exists", "-h", db_env["POSTGRE_HOST"], "-U", db_env["POSTGRE_USER"],
                    db_env["POSTGRE_NAME"]], capture_output=True, text=True)


def start_label_studio(data_dir: Path, port: int | None = None, timeout: float | None = None,
                       db: str = "sqlite") -> Server:
    """Start Label Studio headless on a free port.

    ``db="sqlite"`` (Label Studio's default): on a fresh copy of the migrated data-dir template
    (``timeout`` 180 s). ``db="postgres"``: on a fresh database of the local PostgreSQL server,
    which runs every migration first (``timeout`` 600 s); ``Server.stop()`` drops it.
    """
    if db not in ("sqlite", "postgres"):
        raise ValueError(f"db must be 'sqlite' or 'postgres', got {db!r}")
    exe = ensure_ls_venv()
    port = port or free_port()
    data_dir = Path(data_dir)
    db_env = None
    if db == "postgres":
        data_dir.mkdir(parents=True, exist_ok=True)
        db_env = _postgres_database()
        where = f"PostgreSQL database {db_env['POSTGRE_NAME']}; migrations first"
    else:
        template = ensure_ls_template()
        if data_dir.exists():
            shutil.rmtree(data_dir)
        shutil.copytree(template, data_dir, ignore=shutil.ignore_patterns(".complete", "ls.log"))
        where = f"data {data_dir}"
    on_stop = (lambda: _drop_postgres_database(db_env)) if db_env else None
    log(f"starting Label Studio {LS_VERSION} on 127.0.0.1:{port} ({where})")
    proc, logfile = _launch_ls(exe, data_dir, port, db_env)
    url = f"http://127.0.0.1:{port}"
    try:
        took = _wait_ls(url, proc, logfile, timeout or (600.0 if db_env else 180.0))
    except BaseException:
        stop_process(proc)
        if on_stop:
            on_stop()
        raise
    log(f"Label Studio healthy after {took:.1f}s")
    return Server(url, proc, logfile, took, on_stop=on_stop)


def backend_command(bind: str) -> list[str]:
    """``studio-al serve --bind <bind>`` from the running interpreter's venv."""
    exe = Path(sys.executable).parent / "studio-al"
    if not exe.exists():
        raise HarnessError(f"{exe} not found: install the project into this venv (pip install -e '.[dev]')")
    return [str(exe), *BACKEND_SERVE_ARGS, bind]


def start_backend(ls_url: str, model_dir: Path, strategy: str, extra_env: dict | None = None,
                  timeout: float = 60.0) -> Server:
    """Start OUR backend (gunicorn via ``studio-al serve``) on a free port; wait for /health."""
    port = free_port()
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    logfile = model_dir / "backend.log"
    env = {**os.environ, "LABEL_STUDIO_URL": ls_url, "LABEL_STUDIO_API_KEY": LS_TOKEN,
           "AL_QUERY_STRATEGY": strategy, "MODEL_DIR": str(model_dir), "LOG_LEVEL": "INFO",
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(extra_env or {})}
    cmd = backend_command(f"127.0.0.1:{port}")
    log(f"starting backend: {' '.join(cmd)} (AL_QUERY_STRATEGY={strategy})")
    with open(logfile, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, cwd=str(model_dir))
    url = f"http://127.0.0.1:{port}"
    try:
        took = wait_http(url + "/health", timeout, proc, logfile)
    except BaseException:
        stop_process(proc)
        raise
    log(f"backend healthy after {took:.1f}s")
    return Server(url, proc, logfile, took)


def load_jsonl(name: str, n: int | None = None, per_label: int | None = None) -> list[dict]:
    """Records of ``<data>/<name>.jsonl`` (first ``n``, or the first ``per_label`` of each label)."""
    path = DATA_DIR / f"{name}.jsonl"
    if not path.exists():
        raise HarnessError(f"data file {path} missing (expected the shared data beside the repo)")
    out: list[dict] = []
    counts: dict[Any, int] = {}
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if per_label is not None:
                key = rec.get("label")
                if counts.get(key, 0) >= per_label:
                    continue
                counts[key] = counts.get(key, 0) + 1
            out.append(rec)
            if n is not None and len(out) >= n:
                break
    return out


class LS:
    """Tiny Label Studio REST helper for the tests (the backend has its own client)."""

    def __init__(self, url: str, token: str = LS_TOKEN, logfile: Path | None = None) -> None:
        self.url = url.rstrip("/")
        self.logfile = logfile
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Token {token}"

    def req(self, method: str, path: str, expect: int | tuple = (200, 201, 204), **kw) -> Any:
        r = self.s.request(method, self.url + path, timeout=kw.pop("timeout", 120), **kw)
        codes = (expect,) if isinstance(expect, int) else expect
        if r.status_code not in codes:
            detail = r.text[:500]
            if r.status_code >= 500 and self.logfile is not None and self.logfile.exists():
                # Label Studio answers 5xx with an HTML page: its own log says what went wrong
                tail = self.logfile.read_text(errors="replace").splitlines()[-40:]
                detail = "Label Studio log tail:\n" + "\n".join(tail)
            raise AssertionError(f"{method} {path} -> {r.status_code}: {detail}")
        return r.json() if r.content else None

    def create_project(self, title: str, label_config: str, tasks: list[dict]) -> int:
        p = self.req("POST", "/api/projects", json={"title": title, "label_config": label_config})
        res = self.req("POST", f"/api/projects/{p['id']}/import", json=tasks)
        assert res["task_count"] == len(tasks), res
        return p["id"]

    def task_ids(self, pid: int) -> list[int]:
        out, page = [], 1
        while True:
            body = self.s.get(self.url + "/api/tasks", params={"project": pid, "page": page, "page_size": 1000},
                              timeout=120)
            if body.status_code == 404:
                break
            body.raise_for_status()
            tasks = body.json()["tasks"]
            out += [t["id"] for t in tasks]
            if len(tasks) < 1000:
                break
            page += 1
        return sorted(out)

    def create_user(self, email: str, password: str) -> tuple[int, str]:
        """Create another Label Studio user in the admin's organization; return ``(user id, token)``.

        Label Studio 1.23.2 open source has no API that creates a user WITH credentials
        (``POST /api/users`` makes one without a password, and nobody can read another user's
        token). So: the organization's invite token (``GET /api/invite``, as admin), then the
        signup form ``/user/signup/?token=...`` like a browser (its ``csrftoken`` cookie is the
        form's ``csrfmiddlewaretoken``; needed because ``LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK``
        is on), which logs the new user in; that session reads the user's legacy API token from
        ``GET /api/current-user/token``. The org was created with legacy tokens enabled, so
        ``Authorization: Token <token>`` works for the new user too.
        """
        invite = self.req("GET", "/api/invite")
        s = requests.Session()
        r = s.get(self.url + "/user/signup/", params={"token": invite["token"]}, timeout=60)
        r.raise_for_status()
        csrf = s.cookies.get("csrftoken")
        if not csrf:
            raise HarnessError("Label Studio's signup page set no csrftoken cookie")
        r = s.post(self.url + "/user/signup/", params={"token": invite["token"]},
                   data={"email": email, "password": password, "csrfmiddlewaretoken": csrf},
                   headers={"Referer": self.url + "/user/signup/"}, allow_redirects=False, timeout=60)
        if r.status_code != 302:  # the form is re-rendered with its errors (e.g. email taken)
            raise HarnessError(f"signing up {email} failed: {r.status_code} (expected a 302 redirect)")
        r = s.get(self.url + "/api/current-user/token", timeout=60)
        r.raise_for_status()
        token = r.json()["token"]
        who = requests.get(self.url + "/api/current-user/whoami", headers={"Authorization": f"Token {token}"},
                           timeout=60)
        if who.status_code != 200 or who.json().get("email") != email:
            raise HarnessError(f"the token of new user {email} is refused: {who.status_code} {who.text[:200]}")
        return who.json()["id"], token

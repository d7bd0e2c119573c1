"""The Dockerfile and docker-compose.yml run the same commands and Label Studio settings as the
end-to-end tests (docker itself cannot run on the CI machine, so this is what we can check)."""
from __future__ import annotations

import json
import re

from tests.e2e import harness

REPO = harness.REPO


def _compose_service(name: str) -> str:
    text = (REPO / "docker-compose.yml").read_text()
    m = re.search(rf"^  {re.escape(name)}:\n((?:    .*\n|\s*\n)+)", text, re.M)
    assert m, f"service {name} missing from docker-compose.yml"
    return m.group(1)



def test_backend_command_is_the_one_the_e2e_tests_run():
    e2e = harness.backend_command("0.0.0.0:9090")
    expected = ["studio-al", *e2e[1:]]  # the tests use the venv's absolute path to studio-al
    dockerfile = (REPO / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])\s*$", dockerfile, re.M)
    assert cmd and json.loads(cmd.group(1)) == expected
    compose_cmd = re.search(r"^    command: (\[.*\])\s*$", _compose_service("studio-al"), re.M)
    assert compose_cmd and json.loads(compose_cmd.group(1)) == expected
    assert "FROM python:3.11-slim" in dockerfile and "pip install ." in dockerfile


def test_label_studio_service_matches_the_e2e_settings():
    svc = _compose_service("label-studio")
    assert f"image: heartexlabs/label-studio:{harness.LS_VERSION}" in svc
    env = dict(re.findall(r"^      ([A-Z_]+): \"?([^\"\n]*)\"?$", svc, re.M))
    for key in ("ML_BLOCK_LOCAL_IP", "SSRF_PROTECTION_ENABLED", "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"):
        assert env.get(key) == harness.LS_ENV[key], (key, env.get(key))
    backend_env = dict(re.findall(r"^      ([A-Z_]+): \"?([^\"\n]*)\"?$", _compose_service("studio-al"), re.M))
    assert backend_env["LABEL_STUDIO_API_KEY"] == env["LABEL_STUDIO_USER_TOKEN"]
    assert backend_env["LABEL_STUDIO_URL"] == "http://label-studio:8080"


def test_compose_builds_what_it_runs_reads_secrets_from_env_and_binds_the_backend_locally():
    text = (REPO / "docker-compose.yml").read_text()
    for name in ("studio-al", "worker"):  # an image named but not built would be pulled
        svc = _compose_service(name)
        assert "image: studio-al:latest" in svc and re.search(r"^    build:", svc, re.M), name
    # no secret in the file: every token / password comes from .env (compose's ${VAR:?msg})
    assert not re.search(r"\b[0-9a-f]{40}\b", text)
    for key in ("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_USER_TOKEN", "LABEL_STUDIO_PASSWORD"):
        for value in re.findall(rf"^      {key}: (.*)$", text, re.M):
            assert value.startswith("${") and ":?" in value, (key, value)
    # the backend holds the Label Studio token: published on loopback only
    ports = re.findall(r'^      - "([^"]+)"$', _compose_service("studio-al"), re.M)
    assert ports == ["127.0.0.1:9090:9090"]
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert {"LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_TOKEN"} <= set(example)
    assert ".env" in (REPO / ".gitignore").read_text().split()

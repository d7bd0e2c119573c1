"""studio-al CLI and wsgi: validation first (exit 2, one line), then gunicorn with one worker."""
import os
import subprocess
import sys

from backend import cli


def run(args, env_extra, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AL_", "BASIC_AUTH", "REDIS"))}
    env.update({"MODEL_DIR": str(tmp_path / "m"), **env_extra})
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_serve_bad_setting_exits_2_with_one_line(tmp_path):
    r = run(["serve"], {"AL_QUERY_STRATEGY": "foo"}, tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "AL_QUERY_STRATEGY='foo' is invalid; allowed:" in lines[0]
    assert "breaking_ties" in lines[0]


def test_serve_dry_run_prints_gunicorn_with_one_worker(tmp_path):
    r = run(["serve", "--dry-run", "--bind", "0.0.0.0:9999", "--threads", "3"], {}, tmp_path)
    assert r.returncode == 0, r.stderr
    argv = r.stdout.split()
    assert argv[1:3] == ["-m", "gunicorn"] and argv[-1] == "backend.wsgi:app"
    assert argv[argv.index("--workers") + 1] == "1"
    # gthread made safe against slow clients (backend.gunicorn_worker)
    assert argv[argv.index("--worker-class") + 1] == "backend.gunicorn_worker.SlowClientSafeWorker"
    from gunicorn.util import load_class
    from gunicorn.workers.gthread import ThreadWorker
    assert issubclass(load_class(argv[argv.index("--worker-class") + 1]), ThreadWorker)
    assert argv[argv.index("--threads") + 1] == "3"
    assert argv[argv.index("--bind") + 1] == "0.0.0.0:9999"


def test_worker_requires_redis(tmp_path):
    r = run(["worker"], {}, tmp_path)
    assert r.returncode == 2 and "REDIS_URL is required" in r.stderr


def test_threads_must_be_positive(tmp_path):
    r = run(["serve", "--threads", "0", "--dry-run"], {}, tmp_path)
    assert r.returncode == 2 and "--threads" in r.stderr


def test_wsgi_exits_2_on_bad_settings(tmp_path):
    env = {**os.environ, "MODEL_DIR": str(tmp_path), "LOG_LEVEL": "LOUD"}
    r = subprocess.run([sys.executable, "-c", "import backend.wsgi"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().startswith("studio-al: LOG_LEVEL='LOUD'")


def test_parser_requires_a_command():
    import pytest
    with pytest.raises(SystemExit) as e:
        cli.main([])
    assert e.value.code == 2


def test_simulate_subcommand_delegates_to_the_engine_runner(tmp_path, capsys):
    from backend.cli import main
    rows = [{"text": f"{w} number {i}", "label": w} for i in range(30) for w in ("red", "blue")]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(__import__("json").dumps(r) for r in rows))
    out_dir = tmp_path / "out"
    assert main(["simulate", "--train", str(train), "--test", str(train), "--initial", "4",
                 "--batch", "2", "--rounds", "1", "--out", str(out_dir), "--no-plots",
                 "--no-estimate", "--quiet"]) == 0
    runs = __import__("json").loads((out_dir / "results.json").read_text())["runs"]
    assert [r["labeled"] for r in runs[0]["rounds"]] == [4, 6]

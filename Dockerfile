# studio-al: the Label Studio ML backend (Flask 3 + gunicorn), embedded mode by default.
# Build: docker build -t studio-al .     Run: docker compose up   (see docker-compose.yml)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODEL_DIR=/data/model_store

WORKDIR /app
# dependencies first (layer cache), then the code
COPY pyproject.toml README.md ./
COPY al_engine ./al_engine
COPY backend ./backend
# [redis]: rq + redis for `studio-al worker` and REDIS_URL mode (docker-compose profile redis);
# EXTRAS=redis,neural adds the sentence-embedding default pipeline (torch, CPU wheel via
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu)
ARG EXTRAS=redis
ARG PIP_EXTRA_INDEX_URL
RUN pip install .[${EXTRAS}] \
    && useradd --create-home --uid 1000 studio \
    && mkdir -p /data/model_store && chown -R studio /data

USER studio
VOLUME ["/data"]
EXPOSE 9090
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9090/health', timeout=2).status != 200)"

# The same command the end-to-end tests run (tests/e2e/harness.py, checked by
# tests/e2e/test_docker_files.py).
CMD ["studio-al", "serve", "--bind", "0.0.0.0:9090"]

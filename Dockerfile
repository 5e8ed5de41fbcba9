# syntax=docker/dockerfile:1
# The retrieval service image. Build from the repository root (or `docker compose up --build`):
#
#   docker build -t centroid-retrieval .                                # CPU
#   docker build --build-arg VARIANT=gpu -t centroid-retrieval:gpu .
#
# Expected image size (uncompressed, `docker image ls`): CPU about 400 MB (python:3.11-slim
# ~130 MB; the serve.txt venv, measured: 246 MB, of it onnxruntime 63, faiss-cpu 65, numpy 59,
# Pillow 15; the default model 13 MB); GPU about 7 GB, nearly all of it the CUDA + cuDNN runtime
# libraries of the base image and onnxruntime-gpu/faiss-gpu's CUDA kernels.
#
# Stages: `model-build` runs the project's own export command (needs torch; never shipped),
# `runtime-cpu` / `runtime-gpu` install requirements/serve.txt or serve-gpu.txt only (no torch,
# no compilers: every runtime dependency ships manylinux wheels), and `runtime` is whichever of
# the two VARIANT names plus the service code and the model.

ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# CUDA 12 + cuDNN 9 is what onnxruntime-gpu 1.31 and faiss-gpu-cu12 are built against.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS model-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/ requirements/
# CPU torch wheels: the export runs on the CPU, and PyPI's default Linux torch wheel pulls ~4 GB
# of CUDA libraries this throw-away stage never uses. serve.txt brings ONNX Runtime, which the
# exporter's parity check runs the exported graph on; train.txt brings scikit-image's photos it
# checks on.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu \
        -r requirements/serve.txt -r requirements/train.txt
# The exporter is the training kit plus the torch-free contract it writes (artifact/) and the
# index and store helpers its evaluation and atomic write use.
COPY model/ model/
COPY artifact/ artifact/
COPY index/ index/
COPY store/ store/
RUN python -m model.build_default --out /out/models/default

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime-cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements/serve.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt

# ---------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS runtime-gpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
# Ubuntu 24.04's python3 is 3.12 (the project needs >= 3.11); a venv because the system Python
# refuses pip installs (PEP 668).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# serve-gpu.txt *replaces* serve.txt: onnxruntime-gpu and faiss-gpu-cu12 install the same
# `onnxruntime` and `faiss` modules as their CPU twins, so installing both would let whichever
# came last silently win. The CPU index still takes every update; the service keeps a GPU copy in
# step for searches only (index/gpu_search_mirror.py), because GPU FAISS indexes cannot remove or
# update vectors in place and are not safe for concurrent reads.
COPY requirements/serve-gpu.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt

# ---------------------------------------------------------------------------------------------
FROM runtime-${VARIANT} AS runtime
WORKDIR /srv
# Optional clients on top of the variant's lock, by lock-file name: the Milvus override
# (deploy/docker-compose.milvus.yml) passes "serve-milvus serve-s3". Bound, not copied: the
# image keeps no requirements files.
ARG EXTRA_REQUIREMENTS=""
RUN --mount=type=bind,source=requirements,target=/tmp/requirements \
    for name in ${EXTRA_REQUIREMENTS}; do \
        pip install -r "/tmp/requirements/${name}.txt" || exit 1; \
    done
# A fixed uid so a host directory mounted at /data can be chowned to it ahead of time.
RUN useradd --system --uid 10001 --home-dir /srv --shell /usr/sbin/nologin retrieval \
    && mkdir -p /data \
    && chown retrieval /data
# The torch-free packages the service imports, whole (tests/deploy/test_runtime_requirements.py
# starts the service from exactly these packages in a venv holding requirements/serve.txt only;
# the import contracts in .importlinter keep them free of torch and of model/).
COPY app/ app/
COPY artifact/ artifact/
COPY store/ store/
COPY index/ index/
COPY --from=model-build /out/models/default/ models/default/
ENV RETRIEVAL_MODEL_PATH=/srv/models/default/embedder.onnx \
    RETRIEVAL_DATA_DIR=/data \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER retrieval
VOLUME ["/data"]
EXPOSE 8000
# Liveness only (the process answers): readiness (/readyz) waits for the index rebuild, which can
# take minutes on a large store, and an orchestrator must not kill the container meanwhile.
# python:slim has no curl, hence urllib; a non-2xx answer raises and exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# One process per container: the index lives in memory, so more uvicorn workers would each hold
# and rebuild a copy and miss each other's updates. Scale with RETRIEVAL_WORKER_THREADS instead.
# app.server is uvicorn with one worker plus the slow-client deadlines, the connection cap and
# the raised open-file limit (the same launcher `centroid-retrieval serve` runs).
CMD ["python", "-m", "app.server", "--host", "0.0.0.0", "--port", "8000"]

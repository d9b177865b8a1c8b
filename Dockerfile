# syntax=docker/dockerfile:1
# vision-predictors: KServe model server for ModelScope vision models.
#
# Stages:  builder  -> /opt/venv (dependencies layer, then the package itself)
#          runtime  -> slim final image: BASE_IMAGE + python3 + /opt/venv, UID/GID 1001, ENTRYPOINT predictors
#          demo     -> runtime + demo weights baked into /opt/demo-models (self-contained smoke image)
# The default (last) stage is the runtime image.
#
# Build args:
#   BASE_IMAGE           GPU nodes: an NVIDIA CUDA runtime image; the pipeline builds two variants,
#                        <tag>-cu13 (nvidia/cuda 13.0 base, driver >= 580, sm_75+) and <tag>-cu12
#                        (nvidia/cuda 12.2 base, driver >= 535, still sm_70/V100), see .gitlab-ci.yml;
#                        CPU nodes: a plain Python/Debian image, e.g. python:3.11-slim-bookworm.
#                        Needs a Debian/Ubuntu userland (apt-get) unless it already has python3 + venv.
#   TORCH_INDEX_URL      extra index for torch/torchvision: "" = PyPI (CUDA build),
#                        https://download.pytorch.org/whl/cu130 or .../cu126 (the CUDA 13 / 12 variants:
#                        match the base image's CUDA major), https://download.pytorch.org/whl/cpu (CPU
#                        build), or a file:// index of a wheel directory bind-mounted at build time
#                        (podman build -v DIR:DIR:ro). A local-version wheel (2.14.1+cu126) satisfies
#                        the torch==TORCH_VERSION pin and sorts above PyPI's, so the index decides.
#   PIP_EXTRA_INDEX_URL  further indexes for all other dependencies (optional, e.g. a local mirror).
#   TORCH_VERSION / TORCHVISION_VERSION  pinned so an image never picks up an untested torch.
#   WITH_OFA             1 = install the OFA (visual-entailment) extras; compiles fairseq (~5 min).
#   DEMO_MODELS          demo stage: comma-separated demo models to bake.
# Secrets: none are needed; a private index belongs in a build secret (RUN --mount=type=secret),
# never in an ARG (ARG values are recorded in the image history).

ARG BASE_IMAGE=python:3.11-slim-bookworm

# checkov:skip=CKV_DOCKER_7: the FROM images are the BASE_IMAGE build arg, whose default above and every value the pipeline passes carry an explicit version tag; checkov cannot resolve ARGs.
# ---------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder
ARG TORCH_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG WITH_OFA=0
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# python3 + venv when the base lacks them (CUDA images); a compiler only when fairseq must be built.
# Unpinned Debian packages: the base image tag pins the distribution release (see .hadolint.yaml).
# $packages is a word list on purpose.
# hadolint ignore=SC2086
RUN packages=""; \
    command -v python3 >/dev/null || packages="python3"; \
    python3 -c 'import ensurepip, venv' 2>/dev/null || packages="$packages python3-venv"; \
    if [ "$WITH_OFA" = 1 ]; then packages="$packages build-essential python3-dev"; fi; \
    if [ -n "$packages" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends $packages \
        && rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Layer 1: torch (the big one) - changes only with the pinned versions or the wheel source.
# pip reads PIP_EXTRA_INDEX_URL as a space-separated list: TORCH_INDEX_URL joins the other indexes.
RUN export PIP_EXTRA_INDEX_URL="${PIP_EXTRA_INDEX_URL} ${TORCH_INDEX_URL}" \
    && pip install --upgrade pip==26.3 \
    && pip install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

# Layer 2: the other dependencies, read from pyproject.toml alone so source edits keep this layer.
WORKDIR /src
COPY pyproject.toml ./
COPY ci/requirements-ofa.txt ci/
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && export PIP_EXTRA_INDEX_URL="${PIP_EXTRA_INDEX_URL} ${TORCH_INDEX_URL}" \
    && pip install -r /tmp/requirements.txt "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
    && if [ "$WITH_OFA" = 1 ]; then \
        pip install cython==3.3.1 wheel==0.48.0 \
        && pip install --no-build-isolation -r ci/requirements-ofa.txt; \
    fi

# Layer 3: the package itself (no dependency resolution: everything is installed above).
# The client SDK too (httpx only, already installed): `predictors infer` runs through it.
COPY README.md ./
COPY predictors ./predictors
COPY clients/python ./clients/python
RUN pip install --no-deps . ./clients/python \
    && pip uninstall -y pip \
    && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} + \
    && /opt/venv/bin/predictors --help >/dev/null \
    && /opt/venv/bin/python -c "import predictors_client"

# ---------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

# The interpreter when the base lacks it (the venv links to the base's python3) and jemalloc, the server's
# memory allocator (predictors/allocator.py: `serve` preloads it), then the fixed non-root user.
# HOME is /tmp: the chart mounts an emptyDir at /tmp and the root filesystem is read-only.
# Unpinned Debian packages: the base image tag pins the distribution release (see .hadolint.yaml).
# $packages is a word list on purpose.
# hadolint ignore=SC2086
RUN packages="libjemalloc2"; \
    command -v python3 >/dev/null || packages="$packages python3"; \
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $packages \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 1001 predictors \
    && useradd --system --uid 1001 --gid 1001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin predictors
COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TMPDIR=/tmp \
    HOME=/tmp \
    MODELSCOPE_CACHE=/tmp/modelscope \
    TORCH_HOME=/tmp/torch \
    HF_HOME=/tmp/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib

# Weights are mounted here (KServe storage-initializer / PVC); read-only is fine.
WORKDIR /mnt/models
WORKDIR /tmp
USER 1001:1001
EXPOSE 8080 8081
# For `docker/podman run` only (Kubernetes ignores it and uses the chart's probes). Needs --format docker.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=4)"]
ENTRYPOINT ["/opt/venv/bin/predictors"]
CMD ["serve", "--model-dir", "model=/mnt/models"]

# Labels last: REVISION/CREATED change on every build and must not invalidate the layers above.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://gitlab.example.com/ml/vision-predictors
ARG BASE_IMAGE=python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="vision-predictors" \
      org.opencontainers.image.description="KServe model server for ModelScope vision models (v1/v2 REST, v2 gRPC)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="vision-predictors" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# ---------------------------------------------------------------------------------------------------
FROM runtime AS demo
ARG DEMO_MODELS=general-recognition,image-classification
USER 0:0
# Random demo weights (see predictors/models/demo.py): a self-contained image for smoke tests, never production.
RUN HOME=/root predictors make-demo-models /opt/demo-models --models "${DEMO_MODELS}" \
    && chmod -R a+rX /opt/demo-models \
    && rm -rf /tmp/* /root/.cache
LABEL org.opencontainers.image.description="vision-predictors with RANDOM demo weights (smoke tests only)"
USER 1001:1001
CMD ["serve", "--model-repository", "/opt/demo-models"]

# ---------------------------------------------------------------------------------------------------
FROM runtime

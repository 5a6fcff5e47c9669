# syntax=docker/dockerfile:1
# Image for the `cleanup` retention job (docs/deployment.md).
#
# Two stages on the same base: the builder installs the exact packages of uv.lock
# into a virtualenv in /opt/venv (dependencies first, in their own cached layer,
# then the app), the runtime stage copies only that venv: uv and the build tools
# stay behind. The base is a build argument so a local base can stand in where
# registries cannot be reached; it must provide python3 with the venv module at
# the same path in both stages, and a CA store.
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# uv from PyPI, in a venv of its own that the runtime stage never sees: the
# version pyproject.toml pins (tool.uv.required-version), read from it, so the
# pin is written in one place.
COPY pyproject.toml /tmp/pyproject.toml
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir "uv$(python3 -c 'import tomllib; print(tomllib.load(open("/tmp/pyproject.toml", "rb"))["tool"]["uv"]["required-version"])')"

# uv sync writes /opt/venv with the base's python3 (never a downloaded one),
# trusts the base's CA store (as Debian's pip does), and copies files out of its
# cache mount rather than linking them.
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_SYSTEM_CERTS=1 \
    UV_LINK_MODE=copy \
    PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependency layer: the lock's versions (and hashes) of the dependencies and the
# `all` extra (botocore, psycopg), derived from pyproject.toml and uv.lock alone,
# so editing the code does not reinstall them; --frozen never re-resolves.
# botocore ships the API models of ~450 AWS services (about 17 MB); the job
# talks to S3 and, for IRSA / web identity and SSO credentials, STS and SSO.
# Set BOTOCORE_SERVICES=all to keep every model.
ARG BOTOCORE_SERVICES="s3 sts sso sso-oidc"
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --extra all --no-install-project \
    && python3 -c 'import os, shutil, sys, botocore; keep = sys.argv[1].split(); data = os.path.join(os.path.dirname(botocore.__file__), "data"); [shutil.rmtree(os.path.join(data, n)) for n in os.listdir(data) if "all" not in keep and n not in keep and os.path.isdir(os.path.join(data, n))]' "$BOTOCORE_SERVICES"

# App layer: the project as a wheel (not editable: the runtime stage gets no
# /src); the dependencies are already in place, so uv installs only the project.
# All bytecode is (re)compiled as unchecked-hash .pyc files (-f), valid whatever
# mtimes COPY gives the sources, so nothing is compiled or written at run time.
COPY README.md LICENSE ./
COPY cleanup ./cleanup
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --extra all \
    && python3 -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/venv

FROM ${BASE_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cleanup" \
      org.opencontainers.image.description="Retention job: deletes expired files, S3 objects and PostgreSQL job rows, logging JSON lines." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"

COPY --from=builder /opt/venv /opt/venv

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in the pod.
# PYTHONUNBUFFERED: every JSON line reaches the log collector as it is written.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Numeric, so Kubernetes' runAsNonRoot can verify it without an /etc/passwd entry.
USER 10001:10001
WORKDIR /tmp

ENTRYPOINT ["cleanup"]

# syntax=docker/dockerfile:1
# Image for the `cleanup` retention job (SPEC section 8).
#
# Two stages on the same base: the builder creates a virtualenv in /opt/venv
# (dependencies first, in their own cached layer, then the app), the runtime
# stage copies only that venv. The base is a build argument so a local base can
# stand in where registries cannot be reached; it must provide python3 with the
# venv module at the same path in both stages.
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependency layer: derived from pyproject.toml alone (dependencies plus the
# `all` extra: boto3 and psycopg), so editing the code does not reinstall them.
# botocore ships the API models of ~450 AWS services (about 17 MB); the job
# talks to S3 and, for IRSA / web identity and SSO credentials, STS and SSO.
# Set BOTOCORE_SERVICES=all to keep every model.
ARG BOTOCORE_SERVICES="s3 sts sso sso-oidc"
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["all"]))' > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && python3 -c 'import os, shutil, sys, botocore; keep = sys.argv[1].split(); data = os.path.join(os.path.dirname(botocore.__file__), "data"); [shutil.rmtree(os.path.join(data, n)) for n in os.listdir(data) if "all" not in keep and n not in keep and os.path.isdir(os.path.join(data, n))]' "$BOTOCORE_SERVICES"

# App layer. Not editable: the runtime stage gets no /src. pip and setuptools
# (which some venvs seed) are dropped: nothing installs at run time. All
# bytecode is (re)compiled as unchecked-hash .pyc files (-f), valid whatever
# mtimes COPY gives the sources, so nothing is compiled or written at run time.
COPY README.md ./
COPY cleanup ./cleanup
RUN pip install --no-cache-dir --no-deps . \
    && pip uninstall --yes setuptools pip \
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

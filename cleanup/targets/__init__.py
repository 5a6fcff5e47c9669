"""Targets, one module per store. Modules load lazily so boto3 and psycopg are
imported only when a target of that kind runs (start-up time matters in a CronJob)."""

from __future__ import annotations

import importlib
from typing import cast

from cleanup.config import TargetSettings
from cleanup.errors import TargetError
from cleanup.targets.base import Target

MODULES = {
    "volumes": "cleanup.targets.volumes",
    "s3": "cleanup.targets.s3",
    "postgres": "cleanup.targets.postgres",
}


def build(settings: TargetSettings) -> Target:
    """The target for one configured entry; each module exposes `create(settings)`."""
    try:
        module = importlib.import_module(MODULES[settings.kind])
    except ImportError as exc:
        raise TargetError(f"the {settings.kind} target is not available: {exc}") from exc
    return cast(Target, module.create(settings))

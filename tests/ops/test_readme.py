"""The README is the front door: short, two quick-start commands, links that lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _commands(section: str) -> list[str]:
    """The command lines of the shell blocks under a `## <section>` heading of the README."""
    body = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", body, flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_at_most_200_lines() -> None:
    """The README has at most 200 lines: the rest of the documentation is the site under docs/."""
    assert len(README.splitlines()) <= 200


def test_readme_quick_start_is_clone_then_exactly_demo_and_test_suite() -> None:
    """After the clone, the Quick start has exactly two commands: the demo, then the test suite."""
    commands = _commands("Quick start")
    assert commands[0].startswith("git clone ")
    assert commands[1:] == ["bash scripts/demo.sh", "bash scripts/test.sh"]


def test_readme_install_shows_image_chart_and_pip() -> None:
    """Install has the three paths: an image build, `helm install` of the chart, pip with extras."""
    commands = " ".join(_commands("Install"))
    assert "podman build -t" in commands and "docker build" in commands
    assert "helm install media ./helm/cleanup" in commands
    assert "-f examples/values-minimal.yaml" in commands
    assert "pip install '.[all]'" in commands and "cleanup --version" in commands


def test_readme_relative_links_exist() -> None:
    """Every relative link of the README names a file of the repository (docs pages included)."""
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    relative = [link for link in links if "://" not in link]
    assert "docs/getting-started.md" in relative
    assert [link for link in relative if not (REPO / link).exists()] == []

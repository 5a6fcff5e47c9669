"""The configuration's one description and what is derived from it (scripts/generate.sh)."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cleanup import schema
from cleanup.cli import build_parser
from cleanup.config import FLAGS, Settings
from cleanup.targets import KINDS, kind_of

REPO = Path(__file__).parents[2]
PACKAGE = REPO / "cleanup"


def _generate(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts/generate.py"), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=root,
        timeout=60,
    )


def test_generate_check_passes_on_the_checkout() -> None:
    """Every derived file that is checked in is current."""
    proc = _generate(REPO, "--check")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("derived", "generated"),
    [
        ("helm/cleanup/values.schema.json", "Unique across all targets"),
        ("helm/cleanup/values.yaml", "Delete nothing; report what a real run would delete."),
        ("docs/configuration.md", "Unique across all targets"),
        ("helm/cleanup/README.md", "Image repository."),
    ],
)
def test_generate_check_fails_naming_a_hand_edited_file(
    tmp_path: Path, derived: str, generated: str
) -> None:
    """A hand edit of a generated file makes `generate.sh --check` fail and name the file."""
    copy = tmp_path / "repo"
    for part in ("cleanup", "scripts", "helm", "docs"):
        shutil.copytree(REPO / part, copy / part)
    edited = copy / derived
    assert generated in edited.read_text()
    edited.write_text(edited.read_text().replace(generated, "Hand-edited.", 1))
    proc = _generate(copy, "--check")
    assert proc.returncode == 1
    assert f"stale: {derived}" in proc.stderr
    assert _generate(copy).returncode == 0
    assert _generate(copy, "--check").returncode == 0


def _leaves(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of a values tree, down to scalars, lists and empty maps."""
    found = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        found += _leaves(value, f"{path}.") if isinstance(value, dict) and value else [path]
    return found


def test_chart_readme_documents_every_value() -> None:
    """Every value of values.yaml has a row in the chart README (itself, or the map holding it)."""
    values = yaml.safe_load((REPO / "helm/cleanup/values.yaml").read_text())
    readme = (REPO / "helm/cleanup/README.md").read_text()
    rows = set(re.findall(r"^\| `([\w.-]+)` \|", readme, flags=re.MULTILINE))
    assert {"image.repository", "config.volumes", "alerts.suspended.for"} <= rows
    parts = [leaf.split(".") for leaf in _leaves(values)]
    missing = [p for p in parts if not any(".".join(p[:n]) in rows for n in range(1, len(p) + 1))]
    assert missing == []


def test_chart_config_schema_is_the_declared_one() -> None:
    """The chart's `config` schema lists exactly the declared file keys of every kind."""
    values_schema = json.loads((REPO / "helm/cleanup/values.schema.json").read_text())
    config = values_schema["properties"]["config"]
    assert set(config["properties"]) == {n for n, _ in schema.file_keys(Settings)} | set(KINDS)
    for kind in KINDS:
        declared = {name for name, _ in schema.file_keys(kind_of(kind).settings)}
        assert set(config["properties"][kind]["items"]["properties"]) == declared


def test_config_flags_are_the_command_line_flags() -> None:
    """Every flag the precedence table reads is one the parser accepts."""
    parser_flags = {opt for action in build_parser()._actions for opt in action.option_strings}
    assert {source.label for sources in FLAGS.values() for source in sources} <= parser_flags


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.startswith("cleanup")}


def _module(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_package_import_graph_has_no_cycle() -> None:
    """No module of cleanup/ imports, directly or not, a module that imports it back."""
    graph = {_module(p): _imports(p) for p in PACKAGE.rglob("*.py")}
    # `import a.b.c` also imports a and a.b: count the package's __init__ as imported.
    for edges in graph.values():
        for name in list(edges):
            while "." in name:
                name = name.rsplit(".", 1)[0]
                edges.add(name)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt not in graph:
                continue
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_package_modules_are_at_most_400_lines() -> None:
    """Every module stays small enough to read in one sitting."""
    long = {
        str(p.relative_to(REPO)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}

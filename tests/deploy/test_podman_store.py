"""The repository's podman store: where it runs, and when a test image is rebuilt."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import podman
from tests.support.podman import recipe_tag


def _recipe(root: Path, entrypoint: str) -> Path:
    root.mkdir()
    (root / "Containerfile").write_text("FROM base\n")
    (root / "entrypoint.sh").write_text(entrypoint)
    return root


def test_recipe_tag_same_recipe_and_args_same_tag(tmp_path: Path) -> None:
    """Two identical recipes with identical build arguments get one tag (a cache hit)."""
    first = _recipe(tmp_path / "a", "exec postgres\n")
    second = _recipe(tmp_path / "b", "exec postgres\n")
    assert recipe_tag(first, {"V": "1"}) == recipe_tag(second, {"V": "1"})


def test_recipe_tag_changed_file_or_build_arg_new_tag(tmp_path: Path) -> None:
    """Editing any file of the recipe, or changing a build argument, changes the tag."""
    recipe = _recipe(tmp_path / "a", "exec postgres\n")
    before = recipe_tag(recipe, {"V": "1"})
    assert recipe_tag(recipe, {"V": "2"}) != before
    (recipe / "entrypoint.sh").write_text("exec postgres -c fsync=off\n")
    assert recipe_tag(recipe, {"V": "1"}) != before


def test_runroot_deep_checkout_short_path_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout too deep for overlay's 50-character run directory limit gets a short one,
    distinct per checkout; a shallow one keeps it beside the store."""
    monkeypatch.setattr(podman, "STORES", Path("/w/.cache/containers"))
    assert podman._runroot("overlay") == Path("/w/.cache/containers/overlay/run")
    deep = Path("/tmp/a-rather-deep/checkout/.cache/containers")
    monkeypatch.setattr(podman, "STORES", deep)
    monkeypatch.setattr(podman, "REPO", deep.parents[1])
    first = podman._runroot("overlay")
    monkeypatch.setattr(podman, "REPO", Path("/tmp/another/checkout"))
    assert len(str(first)) <= 50
    assert first != podman._runroot("overlay")

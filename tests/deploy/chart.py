"""The chart checks of scripts/check_chart.py, importable by the tests, and helpers for them.

Tests of the chart's output import from here:

    from tests.deploy.chart import HelmValuesError, of_kind, one

    def test_every_deployment_drops_all_capabilities(rendered):
        for deployment in of_kind(rendered["default"], "Deployment"):
            ...  # deployment.body is the object, deployment.template the file it came from

MEDRELAY_TEST_CHART names another chart folder to check (default: deploy/helm/medrelay).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from helm_python.chart import Chart
from helm_python.errors import HelmError, HelmRenderError, HelmValuesError

ROOT = Path(__file__).resolve().parents[2]


def _load_check_chart() -> Any:
    """scripts/check_chart.py as the module `check_chart` (scripts/ is no package)."""
    if "check_chart" in sys.modules:
        return sys.modules["check_chart"]
    spec = importlib.util.spec_from_file_location("check_chart", ROOT / "scripts/check_chart.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_chart"] = module  # before running it: its dataclasses look it up
    spec.loader.exec_module(module)
    return module


check_chart = _load_check_chart()
RenderedObject = check_chart.RenderedObject
CHART_DIR = Path(os.environ.get("MEDRELAY_TEST_CHART") or check_chart.CHART_DIR).resolve()
CHECKOV: Path = check_chart.CHECKOV

__all__ = [
    "CHART_DIR",
    "CHECKOV",
    "HelmError",
    "HelmRenderError",
    "HelmValuesError",
    "RenderedObject",
    "check_chart",
    "make_renderer",
    "of_kind",
    "one",
]


def of_kind(objects: Iterable[Any], kind: str) -> list[Any]:
    """The objects of one kind, in rendering order."""
    return [obj for obj in objects if obj.kind == kind]


def one(objects: Iterable[Any], kind: str, name: str | None = None) -> Any:
    """The one object of that kind (and name); fails listing what there is otherwise."""
    objects = list(objects)
    found = [obj for obj in of_kind(objects, kind) if name is None or obj.name == name]
    there = ", ".join(f"{obj.kind}/{obj.name}" for obj in objects)
    assert len(found) == 1, f"{len(found)} {kind} named {name or 'anything'} among: {there}"
    return found[0]


def make_renderer(chart: Chart, chart_dir: Path) -> Callable[..., list[Any]]:
    """render(values=None, *, value_set="default") -> objects of the chart rendered with the
    value set's file and then values on top (as `-f ci/<set>.yaml -f extra.yaml` would).

    A value values.schema.json refuses raises HelmValuesError, a template's `fail` or
    `required` HelmRenderError; str(error) is Helm's message.
    """
    sets = {value_set.name: value_set for value_set in check_chart.value_sets(chart_dir)}

    def render(
        values: Mapping[str, Any] | None = None, *, value_set: str = check_chart.DEFAULT
    ) -> list[Any]:
        assert value_set in sets, f"no value set {value_set!r}: there are {sorted(sets)}"
        merged = check_chart.merge_values(sets[value_set].values(), values or {})
        manifests = check_chart.manifests_of(check_chart.render(chart, merged))
        objects: list[Any] = check_chart.objects_of(manifests)
        return objects

    return render

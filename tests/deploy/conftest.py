"""Fixtures for the Helm chart's tests: the chart rendered once per session for every value set.

- `rendered`: {value set: [RenderedObject]} for "default" (the chart's values.yaml) and each
  ci/<name>.yaml by its file's stem; each object has .body (the dict), .template (the file in
  the chart it came from), .kind, .name, .namespace. A value set that did not render fails the
  test that asks for it, with Helm's message.
- `render_chart(values, value_set="default")`: render again with values on top of a value set,
  e.g. to show that a wrong value fails with a message (see tests/deploy/chart.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helm_python.chart import Chart

from tests.deploy.chart import CHART_DIR, check_chart, make_renderer


class RenderedSets(dict[str, list[Any]]):
    """The objects of every value set that rendered; asking for one that did not fails."""

    def __init__(self, renderings: dict[str, Any], errors: dict[str, str]) -> None:
        super().__init__({name: rendering.objects for name, rendering in renderings.items()})
        self.errors = errors

    def __missing__(self, name: str) -> list[Any]:
        if name in self.errors:
            pytest.fail(f"value set {name} did not render: {self.errors[name]}")
        raise KeyError(f"no value set {name!r}: there are {sorted(self) + sorted(self.errors)}")


@pytest.fixture(scope="session")
def chart_dir() -> Path:
    if not (CHART_DIR / "Chart.yaml").is_file():
        pytest.fail(f"no Helm chart at {CHART_DIR}")
    return CHART_DIR


@pytest.fixture(scope="session")
def helm_chart(chart_dir: Path) -> Iterator[Chart]:
    with Chart.load(chart_dir) as chart:
        yield chart


@pytest.fixture(scope="session")
def chart_renderings(helm_chart: Chart, chart_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """({value set: check_chart.Rendering}, {value set that did not render: why})."""
    renderings, errors = {}, {}
    for value_set in check_chart.value_sets(chart_dir):
        try:
            renderings[value_set.name] = check_chart.render_value_set(helm_chart, value_set)
        except (check_chart.HelmError, check_chart.ChartError) as error:
            errors[value_set.name] = str(error).strip()
    return renderings, errors


@pytest.fixture(scope="session")
def rendered(chart_renderings: tuple[dict[str, Any], dict[str, str]]) -> RenderedSets:
    return RenderedSets(*chart_renderings)


@pytest.fixture(scope="session")
def render_chart(helm_chart: Chart, chart_dir: Path) -> Callable[..., list[Any]]:
    return make_renderer(helm_chart, chart_dir)

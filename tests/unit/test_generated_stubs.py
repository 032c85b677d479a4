"""The committed stubs are what `make proto` would generate now, and every package ships."""

from __future__ import annotations

import filecmp
import importlib.util
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_are_not_stale(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_protos", ROOT / "scripts/generate_protos.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate_protos"] = module
    spec.loader.exec_module(module)
    module.generate(tmp_path)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "protoc generated nothing"
    stale = [
        str(path)
        for path in generated
        if not (ROOT / "libs" / path).is_file()
        or not filecmp.cmp(tmp_path / path, ROOT / "libs" / path, shallow=False)
    ]
    assert stale == [], f"run `make proto` and commit: {stale}"
    committed = {p.relative_to(ROOT / "libs") for p in (ROOT / "libs/medrelay").rglob("*_pb2*.py*")}
    assert committed - set(generated) == set(), "stubs without a .proto: delete them"


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = set()
    for base, prefix in (
        (ROOT / "libs/medrelay", "medrelay"),
        (ROOT / "services", "medrelay.services"),
    ):
        for init in base.rglob("__init__.py"):
            parts = init.parent.relative_to(base).parts
            found.add(".".join((prefix, *parts)))
    assert found - listed == set(), "add these packages to [tool.setuptools] packages"

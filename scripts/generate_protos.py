"""Regenerate the committed gRPC stubs from proto/ (what `make proto` runs).

The stubs are committed inside the package at the proto package's path
(`libs/medrelay/<service>/v1/`), as temporalio does, so a deployment needs no protoc.
tests/unit/test_generated_stubs.py fails when they are stale.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PY_OUT = ROOT / "libs"


def proto_files() -> list[Path]:
    """Every .proto under proto/, sorted so generation is deterministic."""
    return sorted(PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path = PY_OUT) -> None:
    """Run protoc (from grpcio-tools) with Python, .pyi and gRPC outputs into out_dir."""
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_DIR)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PY_OUT)

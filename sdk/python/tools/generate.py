"""Regenerates the protobuf and gRPC modules under src/mandate/_proto from ../../proto.

The generated code is committed, so `pip install ./sdk/python` needs no protoc and no
grpcio-tools; `.ci/run` runs this and fails when the result differs from what is
committed. Imports are rewritten to live inside the `mandate` package
(`mandate._proto.mandate.v1`), since the proto package `mandate` would otherwise collide
with the SDK's own name.

Usage: python tools/generate.py   (needs grpcio-tools)
"""

from __future__ import annotations

import pathlib
import re
import shutil
import sys
import tempfile

from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
PROTO = ROOT / "proto"
OUT = HERE.parent / "src" / "mandate" / "_proto"
FILES = [
    "mandate/token/v1/token.proto",
    "mandate/v1/agents.proto",
    "mandate/v1/tasks.proto",
    "mandate/v1/authorization.proto",
    "mandate/v1/approvals.proto",
    "mandate/v1/audit.proto",
    "mandate/v1/policy.proto",
    "mandate/v1/access.proto",
]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO}",
            f"-I{pathlib.Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *FILES,
        ]
        if protoc.main(args) != 0:
            print("protoc failed", file=sys.stderr)
            return 1
        if OUT.exists():
            shutil.rmtree(OUT)
        for src in sorted(pathlib.Path(tmp).rglob("*.py*")):
            rel = src.relative_to(tmp)
            text = src.read_text()
            text = re.sub(r"^from mandate\.", "from mandate._proto.mandate.", text, flags=re.M)
            text = re.sub(r"^import mandate\.", "import mandate._proto.mandate.", text, flags=re.M)
            dest = OUT / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)
        for d in [OUT, *[p for p in OUT.rglob("*") if p.is_dir()]]:
            (d / "__init__.py").write_text("")
    return 0


if __name__ == "__main__":
    sys.exit(main())

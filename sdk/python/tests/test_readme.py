"""The package README's walkthrough, run as written against the test coordinator (only the
address, the admin key's path and, so that runs never collide, the agent names change)."""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_walkthrough_works_as_written(coordinator) -> None:  # type: ignore[no-untyped-def]
    text = README.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None, "the README has no Python walkthrough"
    source = code.group(1)
    for old, new in [
        ('"127.0.0.1:7468"', repr(coordinator.address)),
        ('"mandate-data/admin.key"', repr(str(coordinator.data / "admin.key"))),
        ("spiffe://mandate.local/planner", f"spiffe://mandate.local/readme-{os.getpid()}/planner"),
        ("spiffe://mandate.local/tools/files", f"spiffe://mandate.local/readme-{os.getpid()}/tool"),
    ]:
        assert old in source, old
        source = source.replace(old, new)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, str(README), "exec"), {})  # noqa: S102
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Decision(allowed=True"), lines
    assert lines[1:] == ["True", "REVOKED"], lines

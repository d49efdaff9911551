"""Publish a benchmark's results: ``results/<name>.json`` (meta and rows),
``results/<name>.md``, and the README section between ``<!-- <name>:start -->`` and
``<!-- <name>:end -->``, so no table is pasted by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def publish(name: str, table: str, out: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (out / f"{name}.md").write_text(table)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = README.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        README.write_text(f"{head}{start}\n{table}{end}{rest.split(end, 1)[1]}")

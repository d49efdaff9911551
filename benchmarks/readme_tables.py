"""Publish a benchmark's results: ``results/<name>.json`` (meta and rows),
``results/<name>.md``, and, when ``out`` is the repository's ``benchmarks/results``, the
README section between ``<!-- <name>:start -->`` and ``<!-- <name>:end -->``, so no
table is pasted by hand (a run written elsewhere leaves the README alone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"
RESULTS = Path(__file__).resolve().parent / "results"


def publish(name: str, table: str, out: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (out / f"{name}.md").write_text(table)
    if Path(out).resolve() != RESULTS:
        return
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = README.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        README.write_text(f"{head}{start}\n{table}{end}{rest.split(end, 1)[1]}")

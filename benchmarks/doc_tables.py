"""Publish a benchmark's results: ``results/<name>.json`` (meta and rows),
``results/<name>.md``, and, when ``out`` is the repository's ``benchmarks/results``, the
table between ``<!-- <name>:start -->`` and ``<!-- <name>:end -->`` in
``docs/benchmarks.md`` (and a headline table between the same markers in the README,
when the script gives one), so no table is pasted by hand. A run written elsewhere
leaves the pages alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
README = ROOT / "README.md"


def publish(
    name: str,
    table: str,
    out: Path,
    meta: dict[str, Any],
    rows: list[dict[str, Any]],
    headline: str | None = None,
) -> None:
    """Write the results under ``out``; when ``out`` is ``RESULTS``, also the pages' blocks."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (out / f"{name}.md").write_text(table)
    if Path(out).resolve() != RESULTS:
        return
    replace_block(DOCS, name, table)
    if headline is not None:
        replace_block(README, name, headline)


def block(page: Path, name: str) -> str | None:
    """The text between ``name``'s markers on ``page``, or None where it has none."""
    start, end = markers(name)
    text = page.read_text()
    if start not in text or end not in text:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].removeprefix("\n")


def replace_block(page: Path, name: str, table: str) -> None:
    """Put ``table`` between ``name``'s markers on ``page``; a page without them is left
    alone, with a note (a preset such as ``learning_full`` has no block until one is added)."""
    start, end = markers(name)
    if block(page, name) is None:
        print(f"{page.relative_to(ROOT)} has no {start} ... {end} block: left as it is")
        return
    head, rest = page.read_text().split(start, 1)
    page.write_text(f"{head}{start}\n{table}{end}{rest.split(end, 1)[1]}")


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"

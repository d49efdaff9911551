"""Publish a benchmark's Markdown table: ``results/<name>.md`` and the README section
between ``<!-- <name>:start -->`` and ``<!-- <name>:end -->``, so no table is pasted by hand."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def publish(name: str, table: str, out: Path) -> None:
    (out / f"{name}.md").write_text(table)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = README.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        README.write_text(f"{head}{start}\n{table}{end}{rest.split(end, 1)[1]}")

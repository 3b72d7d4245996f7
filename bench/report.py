"""Write ``report.json`` and ``report.md`` from the benchmark results."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .common import BenchResult, Figure


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def figure_line(f: Figure) -> str:
    target = f" (target ≤ {_fmt(f.target)} {f.unit}: {f.verdict})" if f.target is not None else ""
    return f"{f.name}: {_fmt(f.value)} {f.unit}{target}"


def write(
    directory: Path, results: list[BenchResult], machine: dict[str, Any], command: str
) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    doc = {
        "generated_at": stamp,
        "command": command,
        "machine": machine,
        "benchmarks": [
            {
                **dataclasses.asdict(r),
                "figures": [{**dataclasses.asdict(f), "verdict": f.verdict} for f in r.figures],
            }
            for r in results
        ],
    }
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    md_path = directory / "report.md"
    md_path.write_text(_markdown(results, machine, command, stamp))
    return json_path, md_path


def _markdown(results: list[BenchResult], machine: dict[str, Any], command: str, stamp: str) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items())
    lines = [
        "# townhall benchmarks",
        "",
        f"Generated {stamp} by `{command}`.",
        "",
        f"Machine: {machine.get('cores')} cores, {machine.get('cpu_model')}, "
        f"Python {machine.get('python')}, {machine.get('platform')}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in machine.get('loadavg_at_start', []))}.",
        f"Versions: {versions}.",
        "",
        "Targets are the issue's; they are reported, not asserted. Raw measurements are in "
        "`report.json`.",
        "",
    ]
    for r in results:
        lines += [f"## {r.name}", "", r.description, ""]
        if r.error:
            lines += [f"**Failed:** `{r.error}`", ""]
        if r.figures:
            lines += ["| figure | value | target | verdict |", "|---|---:|---:|---|"]
            for f in r.figures:
                target = f"≤ {_fmt(f.target)} {f.unit}" if f.target is not None else ""
                lines.append(f"| {f.name} | {_fmt(f.value)} {f.unit} | {target} | {f.verdict} |")
            lines.append("")
        for note in r.notes:
            lines.append(f"- {note}")
        if r.notes:
            lines.append("")
    return "\n".join(lines)

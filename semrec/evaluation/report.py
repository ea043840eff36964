"""The benchmark report as JSON and as a Markdown table (every method side by side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..files import atomic_write_text


def _pm(metric: dict | None, digits: int = 3) -> str:
    if not metric:
        return "-"
    if metric.get("se") is None or metric["se"] != metric["se"]:
        return f"{metric['mean']:.{digits}f}"
    return f"{metric['mean']:.{digits}f} ± {metric['se']:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The results table (test split) and the levers table (validation split)."""
    meta = report["meta"]
    k = meta["k"]
    lines = [
        f"Dataset {meta['dataset']}, protocol {meta['protocol']}, full ranking over {meta['items']} items, "
        f"{'history excluded' if meta['exclude_seen'] else 'history included'}, {meta['users']} users "
        f"({meta['cold_targets']} with a cold target: <= 2 training interactions); mean ± standard error.",
        "",
        f"| method | R@{k} | NDCG@{k} | MRR@{k} | cov@{k} | ILD | pop | cold R@{k} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        m = row["metrics"]
        lines.append(
            f"| {row['method']} | {_pm(m[f'recall@{k}'])} | {_pm(m[f'ndcg@{k}'])} | {m[f'mrr@{k}']['mean']:.3f} "
            f"| {m[f'coverage@{k}']:.3f} | {m['diversity']['mean']:.3f} | {m['popularity']['mean']:.3f} "
            f"| {_pm(m[f'cold_recall@{k}'])} |"
        )
    if report.get("levers"):
        lines += ["", f"Levers (validation split; each varied alone around the selected configuration):", ""]
        lines += [f"| lever | value | R@{k} | NDCG@{k} | cov@{k} | cold R@{k} |", "|---|---|---|---|---|---|"]
        for row in report["levers"]:
            m = row["validation"]
            if m is None:
                lines.append(f"| {row['lever']} | {row['value']} | (not in the grid) | | | |")
                continue
            lines.append(
                f"| {row['lever']} | {row['value']} | {_pm(m[f'recall@{k}'])} | {_pm(m[f'ndcg@{k}'])} "
                f"| {m[f'coverage@{k}']:.3f} | {_pm(m[f'cold_recall@{k}'])} |"
            )
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write `report.json` and `report.md` into `folder` (created if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"quality-{report['meta']['dataset']}-{report['meta']['protocol']}"
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    atomic_write_text(json_path, json.dumps(report, indent=2, default=str))
    atomic_write_text(md_path, markdown(report))
    return json_path, md_path

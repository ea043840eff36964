"""The model card of a fine-tuned model: `README.md` for people, `semrec_finetune.json` for code.

Both record the base model, the data, the loss, the steps and the before/after metrics.

Example:
    >>> write_card("out/model", {"base_model": "sentence-transformers/all-MiniLM-L6-v2"})  # doctest: +SKIP
    >>> read_card("out/model")["base_model"]                                               # doctest: +SKIP
    'sentence-transformers/all-MiniLM-L6-v2'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError

CARD_JSON = "semrec_finetune.json"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(before: dict, after: dict) -> list[str]:
    keys = [k for k in after if isinstance(after.get(k), (int, float))]
    lines = ["| metric | before | after |", "|---|---|---|"]
    for key in keys:
        lines.append(f"| {key} | {_fmt(before.get(key, ''))} | {_fmt(after[key])} |")
    return lines


def render_card(info: dict) -> str:
    """The README.md text (YAML front matter + sections) for `info` (see `write_card`)."""
    base = info.get("base_model", "")
    lines = [
        "---",
        "library_name: sentence-transformers",
        f"base_model: {base}",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, semrec, recommendation, fine-tuned]",
        "---",
        "",
        f"# {info.get('name', 'semrec fine-tuned encoder')}",
        "",
        f"Fine-tuned by semrec {info.get('semrec_version', '')} from `{base}` on interaction data: "
        "(text summary of a user's history up to an event, text of the item at that event) pairs"
        + (" and item-item co-occurrence pairs" if info.get("data", {}).get("item_pairs") else "")
        + ", from the training split only.",
        "",
        ("Vectors of this model are not comparable with the base model's: re-index the catalog "
        "(`semrec reindex CATALOG --store DIR --model THIS_FOLDER`, a blue-green rebuild) before "
        "serving with it."),
        "",
        "## Data",
        "",
        "```json",
        json.dumps(info.get("data", {}), indent=2, ensure_ascii=False, default=str),
        "```",
        "",
        "## Training",
        "",
        f"- method: {info.get('method', '')}",
        f"- loss: {info.get('training', {}).get('loss', '')}",
        (f"- steps: {info.get('training', {}).get('steps', '')} (best: {info.get('training', {}).get('best_step', '')}, "
        f"stopped by {info.get('training', {}).get('stopped', '')})"),
        (f"- pairs seen: {info.get('training', {}).get('pairs_seen', '')}, "
        f"{info.get('training', {}).get('pairs_per_s', '')} pairs/s, "
        f"{info.get('training', {}).get('seconds', '')} s, device {info.get('training', {}).get('device', '')}"),
        "",
        "```json",
        json.dumps(info.get("config", {}), indent=2, default=str),
        "```",
        "",
        "## Metrics (before = base model, after = this model; same split, same scorer)",
        "",
    ]
    for split, values in info.get("metrics", {}).items():
        lines += [f"### {split}", ""] + _table(values.get("before", {}), values.get("after", {})) + [""]
    return "\n".join(lines)


def write_card(folder: str | Path, info: dict) -> Path:
    """Write README.md and semrec_finetune.json into a saved model folder; returns the JSON path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{str(folder)!r} is not a model folder; save the model there first.")
    (folder / "README.md").write_text(render_card(info), encoding="utf-8")
    path = folder / CARD_JSON
    path.write_text(json.dumps(info, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return path


def read_card(folder: str | Path) -> dict:
    """The structured card of a fine-tuned model folder."""
    path = Path(folder) / CARD_JSON
    if not path.exists():
        raise ConfigError(f"{str(path)!r} does not exist; {str(folder)!r} was not made by semrec finetune.")
    return json.loads(path.read_text(encoding="utf-8"))

"""Item catalog: reading (DataFrame, CSV, Parquet, JSONL), row validation, and the text that is encoded."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .errors import CatalogError, ConfigError

#: Columns with a meaning of their own; every other column is kept as filterable payload.
KNOWN_COLUMNS = ("item_id", "name", "category", "tags", "description")
#: Payload keys semrec writes itself; a catalog column may not use them.
RESERVED_KEYS = ("category_levels", "text", "popularity")
MAX_NAME_CHARS = 500
MAX_DESCRIPTION_CHARS = 1000
#: The default item text: name, category and tags; empty parts are left out.
DEFAULT_TEMPLATE = "{name}. Category: {category}. Tags: {tags}."

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TAG_SPLIT = re.compile(r"[|,]")


@dataclass
class Item:
    """One valid catalog row, ready to encode and store."""

    item_id: str
    name: str
    category: str | None = None
    tags: list[str] = field(default_factory=list)
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    @property
    def category_levels(self) -> list[str]:
        """Every ancestor path of the category: "A > B" gives ["A", "A > B"]."""
        if not self.category:
            return []
        parts = [p.strip() for p in self.category.split(">") if p.strip()]
        return [" > ".join(parts[: i + 1]) for i in range(len(parts))]

    def payload(self) -> dict[str, Any]:
        """What is stored beside the vector (and filterable)."""
        data: dict[str, Any] = {
            "item_id": self.item_id,
            "name": self.name,
            "tags": self.tags,
            "category_levels": self.category_levels,
            "text": self.text,
        }
        if self.category:
            data["category"] = self.category
        if self.description:
            data["description"] = self.description
        data.update(self.extra)
        return data


@dataclass
class Reject:
    """A catalog row that was not indexed, and why."""

    row: int
    reason: str
    item_id: Any = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"row": self.row, "item_id": self.item_id, "reason": self.reason, "data": self.data},
            ensure_ascii=False,
            default=str,
        )


@dataclass
class Catalog:
    """The valid items of a catalog and the rejected rows."""

    items: list[Item]
    rejects: list[Reject]

    def __len__(self) -> int:
        return len(self.items)


def read_table(source: pd.DataFrame | str | Path) -> pd.DataFrame:
    """Read a catalog or events table from a DataFrame, CSV, Parquet (file or folder) or JSONL."""
    if isinstance(source, pd.DataFrame):
        return source
    path = Path(source)
    if not path.exists():
        raise CatalogError(f"File {str(path)!r} does not exist; pass a CSV, Parquet or JSONL path.")
    suffix = path.suffix.lower()
    try:
        if path.is_dir() or suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path, dtype={"item_id": str, "user_id": str}, keep_default_na=True)
        if suffix in (".jsonl", ".ndjson", ".json"):
            return pd.read_json(path, lines=suffix != ".json", dtype=False)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"Could not read {str(path)!r}: {exc}") from exc
    raise CatalogError(
        f"Unsupported file type {suffix!r} for {str(path)!r}; expected .csv, .parquet, .jsonl "
        "or a folder of Parquet files."
    )


def load_catalog(
    source: pd.DataFrame | str | Path,
    *,
    template: str = DEFAULT_TEMPLATE,
    max_name_chars: int = MAX_NAME_CHARS,
    max_description_chars: int = MAX_DESCRIPTION_CHARS,
) -> Catalog:
    """Validate a catalog: good rows become `Item`s, bad rows become `Reject`s with a reason.

    Example:
        >>> cat = load_catalog(pd.DataFrame({"item_id": [1, 2], "name": ["Kettle", ""]}))
        >>> [i.item_id for i in cat.items], [r.reason for r in cat.rejects]
        (['1'], ['name is missing or empty'])
    """
    frame = read_table(source)
    _check_columns(frame)
    _check_template(template)
    extra_columns = [c for c in frame.columns if c not in KNOWN_COLUMNS]
    items: list[Item] = []
    rejects: list[Reject] = []
    first_seen: dict[str, int] = {}
    for row_number, row in enumerate(frame.to_dict(orient="records")):
        try:
            item = _parse_row(row, extra_columns, max_name_chars, max_description_chars)
        except _RowError as exc:
            rejects.append(Reject(row_number, str(exc), _json_safe(row.get("item_id")), _row_data(row)))
            continue
        if item.item_id in first_seen:
            reason = f"duplicate item_id {item.item_id!r} (first seen at row {first_seen[item.item_id]})"
            rejects.append(Reject(row_number, reason, item.item_id, _row_data(row)))
            continue
        first_seen[item.item_id] = row_number
        item.text = item_text(item, template)
        items.append(item)
    return Catalog(items, rejects)


def item_text(item: Item, template: str = DEFAULT_TEMPLATE) -> str:
    """Fill the template; sentences whose fields are empty are dropped.

    Example:
        >>> item_text(Item("1", "Kettle", "Kitchen", ["tea"]))
        'Kettle. Category: Kitchen. Tags: tea.'
    """
    values = {
        "name": item.name,
        "category": item.category or "",
        "tags": ", ".join(item.tags),
        "description": item.description or "",
        **{k: "" if v is None else str(v) for k, v in item.extra.items()},
    }
    sentences = [s for s in re.split(r"(?<=\.)\s+", template) if s]
    kept = []
    for sentence in sentences:
        fields = re.findall(r"{(\w+)}", sentence)
        if fields and all(not values.get(f) for f in fields):
            continue
        kept.append(sentence.format_map(_Blank(values)))
    return " ".join(kept).strip()


def write_rejects(rejects: Iterable[Reject], path: str | Path) -> Path:
    """Write rejected rows as JSONL (one {row, item_id, reason, data} per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for reject in rejects:
            handle.write(reject.to_json() + "\n")
    return path


def canonical_id(value: Any, what: str = "item_id") -> str:
    """Item and user ids are compared as strings: 42, 42.0, "42" are the same id."""
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{what} {value!r} is not valid; expected a non-empty string or integer.")
    if isinstance(value, (float, np.floating)):
        if math.isnan(value) or not float(value).is_integer():
            raise ConfigError(f"{what} {value!r} is not valid; expected a string or an integer.")
        value = int(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ConfigError(f"{what} {value!r} is not valid; expected a non-empty string or integer.")


class _RowError(ValueError):
    pass


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _check_columns(frame: pd.DataFrame) -> None:
    columns = ", ".join(map(str, frame.columns)) or "none"
    for required, hint in (("item_id", "id"), ("name", "title")):
        if required not in frame.columns:
            raise CatalogError(
                f"Catalog has no {required!r} column (columns: {columns}). Every catalog needs "
                f"'item_id' and 'name'; rename yours, e.g. "
                f"df.rename(columns={{'{hint}': '{required}'}})."
            )
    clash = [c for c in frame.columns if c in RESERVED_KEYS]
    if clash:
        raise CatalogError(
            f"Catalog column(s) {clash} use names semrec reserves for its own payload "
            f"({', '.join(RESERVED_KEYS)}); rename them."
        )


def _check_template(template: str) -> None:
    if "{name}" not in template:
        raise ConfigError(
            f"Item text template {template!r} has no {{name}} field; the name must be part of "
            f"the encoded text, e.g. {DEFAULT_TEMPLATE!r}."
        )


def _parse_row(row: dict, extra_columns: list[str], max_name: int, max_desc: int) -> Item:
    try:
        item_id = canonical_id(row.get("item_id"))
    except ConfigError:
        raise _RowError(f"item_id is missing or invalid ({row.get('item_id')!r})") from None
    name = _clean_text(row.get("name"), "name")
    if not name:
        raise _RowError("name is missing or empty")
    if len(name) > max_name:
        raise _RowError(
            f"name is {len(name)} characters, more than the {max_name} allowed; put long text "
            "in 'description'"
        )
    category = _clean_text(row.get("category"), "category") or None
    description = _clean_text(row.get("description"), "description") or None
    if description and len(description) > max_desc:
        description = description[:max_desc]
    extra = {}
    for column in extra_columns:
        value = _json_safe(row.get(column))
        if value is not None:
            extra[str(column)] = value
    return Item(item_id, name, category, parse_tags(row.get("tags")), description, extra)


def _clean_text(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if not isinstance(value, str):
        if isinstance(value, (int, np.integer)) and column != "name":
            value = str(value)
        else:
            raise _RowError(f"{column} must be text, got {type(value).__name__} {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _RowError(f"{column} is not valid Unicode text (lone surrogate)") from None
    value = unicodedata.normalize("NFC", _CONTROL.sub(" ", value))
    return " ".join(value.split())


def parse_tags(value: Any) -> list[str]:
    """Tags from a list or a `|`/`,`-separated string; blanks dropped, order and case kept."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        raw = _TAG_SPLIT.split(value)
    elif isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        raw = [v for v in value if isinstance(v, str)]
    else:
        raise _RowError(f"tags must be a list or a '|'-separated string, got {value!r}")
    tags: list[str] = []
    for tag in raw:
        tag = " ".join(_CONTROL.sub(" ", tag).split())
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def _json_safe(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        return [_json_safe(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _row_data(row: dict) -> dict:
    return {str(k): _json_safe(v) for k, v in row.items()}

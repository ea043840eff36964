"""Item catalog: reading (DataFrame, CSV, Parquet, JSONL), row validation, and the text that is encoded."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import numbers
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .errors import CatalogError, ConfigError
from .schema import STORE_MANAGED_KEYS

log = logging.getLogger(__name__)

#: Columns with a meaning of their own; every other column is kept as filterable payload.
KNOWN_COLUMNS = ("item_id", "name", "category", "tags", "description")
#: Payload keys semrec writes itself; a catalog column may not use them.
RESERVED_KEYS = ("category_levels", "text", *STORE_MANAGED_KEYS)
MAX_NAME_CHARS = 500
MAX_DESCRIPTION_CHARS = 1000
#: Tags kept per item (the first ones, after de-duplication); further tags are dropped with a
#: logged warning, as are tags longer than `MAX_TAG_CHARS`: the item itself is kept.
MAX_TAGS = 100
MAX_TAG_CHARS = 100
#: An extra column's value (text, or a list/dict as JSON text) may be this long; a longer one
#: rejects the row: such values belong in 'description' (which is cut to its maximum instead).
MAX_EXTRA_CHARS = 10_000
#: Lists and dicts in extra columns may nest this deep; deeper values reject the row.
MAX_EXTRA_DEPTH = 8
#: The longest search text `clean_query_text` accepts by default.
MAX_QUERY_CHARS = 1000
#: The default item text: name, category and tags; empty parts are left out.
DEFAULT_TEMPLATE = "{name}. Category: {category}. Tags: {tags}."

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TAG_SPLIT = re.compile(r"[|,]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: A payload field name the engine accepts as a (one-level) JSON path key.
_FIELD_NAME = re.compile(r"[\w-]+")
_INT64 = (-(2**63), 2**63 - 1)
#: In a rejects file, longer texts and lists are cut (the reason says what was wrong).
_REJECT_TEXT_CHARS = 1000
_REJECT_LIST_ITEMS = 100


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
        """One JSON line, always valid UTF-8: lone surrogates are written as the text `\\udXXX`,
        NaN as null, inf as "inf", long texts and lists cut."""
        record = {"row": self.row, "item_id": self.item_id, "reason": self.reason, "data": self.data}
        return json.dumps(_jsonable(record), ensure_ascii=False, allow_nan=False)


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

    Rules for hostile values (each bad row is rejected with a reason; the good rows are kept):

    - Text (item_id, name, category, description, tags, extra columns) with a lone surrogate
      (e.g. "\\ud800", not valid Unicode) rejects the row.
    - Tags: de-duplicated in linear time; at most `MAX_TAGS` (100) are kept and a tag longer
      than `MAX_TAG_CHARS` (100) is dropped; dropped tags are counted in one logged warning.
    - Extra columns: NaN/None/NaT mean "missing" (the field is left out for that row); inf,
      an integer outside 64 bits, text or JSON longer than `MAX_EXTRA_CHARS` (10,000), a
      list/dict nested deeper than `MAX_EXTRA_DEPTH` or holding NaN/inf, and values that are
      not text, numbers, bools, dates, lists or dicts (bytes, sets, objects) reject the row.
      Dates are stored as ISO-8601 text; lists and dicts are stored as JSON.
    - A column name the store cannot use as a field (empty, spaces, '.', ':'...) fails the
      whole catalog with `CatalogError` naming the column and a rename.

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
    trimmed: list[int] = []
    for row_number, row in enumerate(frame.to_dict(orient="records")):
        try:
            item, dropped = _parse_row(row, extra_columns, max_name_chars, max_description_chars)
        except _RowError as exc:
            rejects.append(Reject(row_number, str(exc), _json_safe(row.get("item_id")), _row_data(row)))
            continue
        if dropped:
            trimmed.append(row_number)
        if item.item_id in first_seen:
            reason = f"duplicate item_id {item.item_id!r} (first seen at row {first_seen[item.item_id]})"
            rejects.append(Reject(row_number, reason, item.item_id, _row_data(row)))
            continue
        first_seen[item.item_id] = row_number
        item.text = item_text(item, template)
        items.append(item)
    if trimmed:
        log.warning(
            "%d catalog row(s) had more than %d tags or tags longer than %d characters; the extra "
            "tags were dropped (first such row: %d)",
            len(trimmed), MAX_TAGS, MAX_TAG_CHARS, trimmed[0],
        )
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


def write_rejects(rejects: Iterable[Reject], path: str | Path, *, overwrite: bool = True) -> Path:
    """Write rejected rows as JSONL (one {row, item_id, reason, data} per line).

    The file is written whole or not at all (a temporary file, then renamed), and is valid
    UTF-8 JSON even when the rows hold lone surrogates (see `Reject.to_json`). With
    `overwrite=False` an existing file raises `ConfigError` naming it.

    Example:
        >>> write_rejects([Reject(3, "name is missing or empty", "x")], "rejects.jsonl")  # doctest: +SKIP
        PosixPath('rejects.jsonl')
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise ConfigError(
            f"Rejects file {str(path)!r} already exists; remove it, choose another path, or "
            "pass overwrite=True to replace it."
        )
    lines = [reject.to_json() + "\n" for reject in rejects]
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.writelines(lines)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def clean_query_text(text: Any, max_chars: int = MAX_QUERY_CHARS) -> str:
    """A search text made safe to encode: control characters removed, spaces collapsed, NFC.

    Raises `ConfigError` (naming the value and the fix) for a non-string, an empty text, a lone
    surrogate (not valid Unicode) or a text longer than `max_chars` after cleaning.

    Example:
        >>> clean_query_text("  quiet\\twireless  earphones ")
        'quiet wireless earphones'
    """
    example = "e.g. 'quiet wireless earphones'"
    if not isinstance(text, str):
        raise ConfigError(
            f"search text {short_repr(text)} is a {type(text).__name__}, not text; pass a string, {example}."
        )
    bad = _SURROGATE.search(text)
    if bad:
        raise ConfigError(
            f"search text {short_repr(text)} has a lone surrogate {bad.group()!r} at character "
            f"{bad.start()}, which is not valid Unicode; remove it (or decode the input with "
            "errors='replace')."
        )
    clean = " ".join(unicodedata.normalize("NFC", _CONTROL.sub(" ", text)).split())
    if not clean:
        raise ConfigError(f"search text {short_repr(text)} is empty; expected words describing items, {example}.")
    if len(clean) > max_chars:
        raise ConfigError(
            f"search text {short_repr(text)} is {len(clean)} characters, more than the {max_chars} "
            "allowed; shorten it to the words that describe the items."
        )
    return clean


def canonical_id(value: Any, what: str = "item_id") -> str:
    """Item and user ids are compared as strings: 42, 42.0, "42" are the same id.

    Text with a lone surrogate (not valid Unicode, so it cannot be stored) raises `ConfigError`.
    """
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{what} {value!r} is not valid; expected a non-empty string or integer.")
    if isinstance(value, (float, np.floating)):
        if math.isnan(value) or not float(value).is_integer():
            raise ConfigError(f"{what} {value!r} is not valid; expected a string or an integer.")
        value = int(value)
    if isinstance(value, (int, np.integer)):
        if int(value).bit_length() > 256:
            raise ConfigError(
                f"{what} {short_repr(value)} is an integer of {int(value).bit_length()} bits; "
                "expected an id of at most 77 digits (or pass it as text)."
            )
        return str(int(value))
    if isinstance(value, str) and value.strip():
        bad = _SURROGATE.search(value)
        if bad:
            raise ConfigError(
                f"{what} {short_repr(value)} is not valid Unicode text (lone surrogate {bad.group()!r} "
                f"at character {bad.start()}); fix the source's encoding or drop the character."
            )
        return value.strip()
    raise ConfigError(f"{what} {short_repr(value)} is not valid; expected a non-empty string or integer.")


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
    for column in frame.columns:
        name = str(column)
        if column in KNOWN_COLUMNS or _FIELD_NAME.fullmatch(name):
            continue
        fixed = re.sub(r"[^\w-]+", "_", _SURROGATE.sub("", name)).strip("_").lower() or "field"
        hint = " (a CSV saved with its index: save it with index=False)" if name.startswith("Unnamed:") else ""
        raise CatalogError(
            f"Catalog column {name!r}{hint} cannot be a stored field: field names may use letters, "
            f"digits, '_' and '-' only (the store reads '.', spaces and other signs as path "
            f"syntax). Rename it, e.g. df.rename(columns={{{name!r}: {fixed!r}}})."
        )


def _check_template(template: str) -> None:
    if "{name}" not in template:
        raise ConfigError(
            f"Item text template {template!r} has no {{name}} field; the name must be part of "
            f"the encoded text, e.g. {DEFAULT_TEMPLATE!r}."
        )


def _parse_row(row: dict, extra_columns: list[str], max_name: int, max_desc: int) -> tuple[Item, int]:
    """The row's item and how many of its tags were dropped (over the caps)."""
    raw_id = row.get("item_id")
    if isinstance(raw_id, str) and _SURROGATE.search(raw_id):
        raise _RowError(_surrogate_reason("item_id", raw_id))
    try:
        item_id = canonical_id(raw_id)
    except ConfigError:
        raise _RowError(f"item_id is missing or invalid ({short_repr(raw_id)})") from None
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
    tags, dropped = _parse_tags(row.get("tags"))
    extra = {}
    for column in extra_columns:
        value = _extra_value(row.get(column), str(column), 0)
        if value is not _MISSING:
            extra[str(column)] = value
    return Item(item_id, name, category, tags, description, extra), dropped


def _clean_text(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if not isinstance(value, str):
        if isinstance(value, (int, np.integer)) and column != "name" and int(value).bit_length() <= 256:
            value = str(value)
        else:
            raise _RowError(f"{column} must be text, got {type(value).__name__} {short_repr(value)}")
    if _SURROGATE.search(value):
        raise _RowError(_surrogate_reason(column, value))
    value = unicodedata.normalize("NFC", _CONTROL.sub(" ", value))
    return " ".join(value.split())


def parse_tags(value: Any) -> list[str]:
    """Tags from a list or a `|`/`,`-separated string; blanks and repeats dropped, order and case
    kept; at most `MAX_TAGS` tags of at most `MAX_TAG_CHARS` characters (others dropped).

    Example:
        >>> parse_tags("tea|kitchen, tea")
        ['tea', 'kitchen']
    """
    return _parse_tags(value)[0]


def _parse_tags(value: Any) -> tuple[list[str], int]:
    """The kept tags and how many distinct tags were dropped over the caps (linear time)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return [], 0
    if isinstance(value, str):
        raw = _TAG_SPLIT.split(value)
    elif isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        raw = [v for v in value if isinstance(v, str)]
    else:
        raise _RowError(f"tags must be a list or a '|'-separated string, got {short_repr(value)}")
    kept: dict[str, None] = {}  # insertion-ordered set: membership is O(1)
    dropped: set[str] = set()
    for position, tag in enumerate(raw):
        if _SURROGATE.search(tag):
            raise _RowError(_surrogate_reason(f"tags[{position}]", tag))
        tag = " ".join(_CONTROL.sub(" ", tag).split())
        if not tag or tag in kept:
            continue
        if len(tag) > MAX_TAG_CHARS or len(kept) >= MAX_TAGS:
            dropped.add(tag)
        else:
            kept[tag] = None
    return list(kept), len(dropped)


_MISSING = object()


def _extra_value(value: Any, column: str, depth: int) -> Any:
    """An extra column's value as the store takes it, `_MISSING` (leave the field out), or a
    `_RowError` saying why the row cannot be stored."""
    if value is None or value is pd.NA or value is pd.NaT:
        return _MISSING
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        number = int(value)
        if not _INT64[0] <= number <= _INT64[1]:
            raise _RowError(
                f"{column!r} is {short_repr(number)}, outside the 64-bit integer range the store keeps; "
                "store it as text"
            )
        return number
    if isinstance(value, (float, np.floating, Decimal)):
        try:
            number = float(value)
        except ValueError:  # Decimal("sNaN")
            number = math.nan
        if math.isnan(number):
            return _MISSING
        if math.isinf(number):
            raise _RowError(
                f"{column!r} is {number}; expected a finite number (leave the cell empty for a "
                "missing value)"
            )
        return number
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise _RowError(_surrogate_reason(repr(column), value))
        if len(value) > MAX_EXTRA_CHARS:
            raise _RowError(
                f"{column!r} is {len(value)} characters, more than the {MAX_EXTRA_CHARS} allowed; "
                "put long text in 'description'"
            )
        return value
    if isinstance(value, np.datetime64):
        try:
            value = pd.Timestamp(value)
        except (ValueError, OverflowError):
            raise _RowError(f"{column!r} is {short_repr(value)}, a date out of range; store it as text") from None
        if value is pd.NaT:
            return _MISSING
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple, np.ndarray, dict)):
        return _extra_container(value, column, depth)
    raise _RowError(
        f"{column!r} holds a value of type {type(value).__name__} ({short_repr(value)}); expected text, a number, "
        "a bool, a date, a list or a dict: convert the column first"
    )


def _extra_container(value: Any, column: str, depth: int) -> Any:
    if depth >= MAX_EXTRA_DEPTH:
        raise _RowError(f"{column!r} is nested more than {MAX_EXTRA_DEPTH} levels deep; flatten it")
    if isinstance(value, dict):
        out: Any = {}
        for key, inner in value.items():
            key = _key_text(key)
            if _SURROGATE.search(key):
                raise _RowError(_surrogate_reason(f"a key in {column!r}", key))
            out[key] = _inner_value(inner, column, depth)
    else:
        out = [_inner_value(inner, column, depth) for inner in (value.tolist() if isinstance(value, np.ndarray) else value)]
    size = len(json.dumps(out, ensure_ascii=False))
    if size > MAX_EXTRA_CHARS:
        raise _RowError(
            f"{column!r} is {size} characters as JSON, more than the {MAX_EXTRA_CHARS} allowed; "
            "keep lists and dicts small"
        )
    return out


def _inner_value(value: Any, column: str, depth: int) -> Any:
    """A value inside a list or dict: as `_extra_value`, but a missing one cannot be left out."""
    inner = _extra_value(value, column, depth + 1)
    if inner is _MISSING:
        raise _RowError(f"{column!r} holds a missing value (None or NaN) inside a list or dict; drop it")
    return inner


def _key_text(key: Any) -> str:
    """A dict key as text (JSON keys are text): 1 -> "1"; never raises."""
    if isinstance(key, np.generic):
        key = key.item()
    return key if isinstance(key, str) else short_repr(key)


def _surrogate_reason(what: str, text: str) -> str:
    bad = _SURROGATE.search(text)
    return (
        f"{what} is not valid Unicode text (lone surrogate {bad.group()!r} at character "
        f"{bad.start()}); fix the source's encoding or drop the character"
    )


def short_repr(value: Any, limit: int = 80) -> str:
    """A repr for error messages that never raises and is cut after `limit` characters.

    Example:
        >>> short_repr("x" * 100, 10)
        "'xxxxxxxxx... (102 characters)"
    """
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - an int too long to print, a broken __repr__
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Anything as plain JSON that encodes to UTF-8 (for rejects files): never raises."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        if len(value) > _REJECT_TEXT_CHARS:
            value = f"{value[:_REJECT_TEXT_CHARS]}... ({len(value)} characters)"
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if depth < MAX_EXTRA_DEPTH:
        if isinstance(value, dict):
            return {_jsonable(_key_text(k)): _jsonable(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
            values = list(value)
            out = [_jsonable(v, depth + 1) for v in values[:_REJECT_LIST_ITEMS]]
            if len(values) > _REJECT_LIST_ITEMS:
                out.append(f"... ({len(values)} items)")
            return out
    return _jsonable(short_repr(value, _REJECT_TEXT_CHARS), depth)


def _json_safe(value: Any) -> Any:
    """A cell as plain Python for a `Reject` (numpy scalars unwrapped; NaN, NA and NaT as None);
    lists and dicts are kept as they are: `Reject.to_json` makes them JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _row_data(row: dict) -> dict:
    return {str(k): _json_safe(v) for k, v in row.items()}

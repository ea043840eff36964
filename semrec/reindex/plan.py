"""What a re-index run has to do: the catalog compared with the state of the store version."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..catalog import Item
from .state import Row, item_row

Mode = Literal["full", "append", "rebuild"]


@dataclass
class Plan:
    """Catalog items sorted by what must happen to them.

    `encode`: new items and items whose encoded text changed (encoded, upserted);
    `payload_only`: items whose payload changed but not their text (payload replaced, vector kept);
    `delete`: stored ids that left the catalog (`full` mode only); `kept`: ids that left the
    catalog but stay (`append` mode).
    """

    new: list[Item] = field(default_factory=list)
    text_changed: list[Item] = field(default_factory=list)
    payload_only: list[Item] = field(default_factory=list)
    unchanged: int = 0
    delete: list[str] = field(default_factory=list)
    kept: int = 0
    rows: dict[str, Row] = field(default_factory=dict)

    @property
    def encode(self) -> list[Item]:
        return self.new + self.text_changed

    @property
    def empty(self) -> bool:
        return not (self.new or self.text_changed or self.payload_only or self.delete)


def make_plan(items: list[Item], state_rows: dict[str, Row], mode: Mode) -> Plan:
    """Compare catalog items with the state rows.

    Example:
        >>> make_plan([], {}, "full").empty
        True
    """
    plan = Plan()
    for item in items:
        row = item_row(item)
        plan.rows[item.item_id] = row
        old = state_rows.get(item.item_id)
        if old is None:
            plan.new.append(item)
        elif old.text_hash != row.text_hash:
            plan.text_changed.append(item)
        elif old.payload_hash != row.payload_hash:
            plan.payload_only.append(item)
        else:
            plan.unchanged += 1
    gone = sorted(set(state_rows) - plan.rows.keys())
    if mode == "append":
        plan.kept = len(gone)
    else:
        plan.delete = gone
    return plan

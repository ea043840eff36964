"""Ranked results, MMR diversity, and the reasons given for each recommendation."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .catalog import RESERVED_KEYS
import pandas as pd

from .store import Hit


@dataclass
class Recommendation:
    """One ranked item: its id, score (dot product, or popularity for the popular fallback),
    its stored fields, and why it was chosen."""

    item_id: str
    score: float
    name: str
    category: str | None = None
    tags: list[str] = field(default_factory=list)
    reason: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    #: What `score` measures: "similarity" (the fused dot product; higher is closer, about -1
    #: to 2 with the collaborative part) or "popularity" (the popular fallback: the number of
    #: distinct users who interacted with the item).
    score_kind: str = "similarity"

    @classmethod
    def from_hit(cls, hit: Hit, reason: str = "", score: float | None = None, score_kind: str = "similarity") -> "Recommendation":
        p = hit.payload
        return cls(
            item_id=str(p.get("item_id")),
            score=hit.score if score is None else score,
            name=p.get("name", ""),
            category=p.get("category"),
            tags=list(p.get("tags", [])),
            reason=reason,
            payload=p,
            score_kind=score_kind,
        )

    @property
    def fields(self) -> dict[str, Any]:
        """The catalog's own fields of the item (price, brand, ...), without store-internal keys."""
        return {k: v for k, v in self.payload.items() if k not in _NOT_FIELDS}


class Results(list):
    """A list of `Recommendation`s that also renders as a table (`to_frame`, HTML in notebooks)."""

    columns = ("item_id", "score", "name", "category", "tags", "reason")

    def __getitem__(self, index):
        found = super().__getitem__(index)
        return Results(found) if isinstance(index, slice) else found

    def to_frame(self) -> pd.DataFrame:
        """One row per result: the columns above, then the catalog's own fields (never
        store-internal keys), then `score_kind`."""
        extra = list(dict.fromkeys(k for r in self for k in r.fields))
        rows = [{**{c: getattr(r, c) for c in self.columns}, **r.fields, "score_kind": r.score_kind} for r in self]
        return pd.DataFrame(rows, columns=[*self.columns, *extra, "score_kind"])

    @property
    def item_ids(self) -> list[str]:
        return [r.item_id for r in self]

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in ("#",) + self.columns)
        body = []
        for rank, r in enumerate(self, 1):
            cells = [str(rank), html.escape(r.item_id), f"{r.score:.3f}", html.escape(r.name),
                     html.escape(r.category or ""), html.escape(", ".join(r.tags)), html.escape(r.reason)]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class DecayRule(BaseModel):
    """Favour items whose date `field` is near `target` (default: now): the score gains
    `weight` x decay, 1 at the target and 0.5 at `scale_days` from it."""

    model_config = ConfigDict(extra="forbid")

    field: str
    weight: float = Field(0.1, ge=-10, le=10)
    scale_days: float = Field(30.0, gt=0)
    target: str | None = None
    kind: Literal["exp", "gauss", "lin"] = "exp"


class RankingRules(BaseModel):
    """Business rules applied inside the engine's ranking, per request.

    Args:
        boost: numeric or bool catalog fields and weights: score += weight x value (e.g.
            {"in_stock": 0.1, "margin": 0.05}; a missing value counts 0).
        decay: favour recent (or upcoming) items by a date field.
        pin: item ids shown first, in this order (if they exist).
        hide: item ids never shown.
        collaborative_weight / popularity_weight: override the configured weights for this
            request (recommend and similar).
        candidates: how many of the vector query's best items the engine rescores.
    """

    model_config = ConfigDict(extra="forbid")

    boost: dict[str, float] = Field(default_factory=dict)
    decay: DecayRule | None = None
    pin: list[str] = Field(default_factory=list)
    hide: list[str] = Field(default_factory=list)
    collaborative_weight: float | None = Field(None, ge=0, le=10)
    popularity_weight: float | None = Field(None, ge=-10, le=10)
    candidates: int = Field(200, ge=1, le=10_000)


def mmr(query: np.ndarray, hits: Sequence[Hit], k: int, diversity: float) -> list[Hit]:
    """Maximal marginal relevance: trade relevance for novelty (0 = relevance only, 1 = novelty).

    Hits must carry vectors.
    """
    if diversity <= 0 or len(hits) <= 1:
        return list(hits[:k])
    vectors = np.stack([h.vector for h in hits])
    relevance = vectors @ query
    chosen: list[int] = []
    best_sim = np.full(len(hits), -np.inf)
    while len(chosen) < min(k, len(hits)):
        redundancy = np.where(np.isfinite(best_sim), best_sim, 0.0)
        score = (1 - diversity) * relevance - diversity * redundancy
        score[chosen] = -np.inf
        pick = int(np.argmax(score))
        chosen.append(pick)
        best_sim = np.maximum(best_sim, vectors @ vectors[pick])
    return [hits[i] for i in chosen]


def explain(
    hits: Sequence[Hit],
    history_names: Sequence[str],
    nearest: np.ndarray | None,
    tag_counts: dict[str, float],
    categories: dict[str, float],
    lead: str | None = None,
) -> list[str]:
    """Why each item was recommended: the history item it is closest to, and shared tags/category.

    `nearest[row]` is the index in `history_names` of the history item closest to hit `row`
    (None: no history comparison); `lead` opens every reason (e.g. "matches 'garden hose'").
    """
    reasons = []
    for row, hit in enumerate(hits):
        parts = [lead] if lead else []
        if nearest is not None:
            parts.append(f"like {history_names[nearest[row]]}")
        if hit.payload.get("category") in categories:
            parts.append(f"in {hit.payload['category']}")
        shared = [t for t in hit.payload.get("tags", []) if t in tag_counts][:3]
        if shared:
            parts.append("tags " + ", ".join(shared))
        reasons.append("; ".join(parts))
    return reasons


#: Payload keys that are not catalog fields: the result's own columns and store-internal keys.
_NOT_FIELDS = frozenset({"item_id", "name", "category", "tags", *RESERVED_KEYS})

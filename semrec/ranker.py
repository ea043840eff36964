"""Queries: the query vector (with negatives pushed down and per-request weights), business
rules inside the engine's ranking, diversity, and the reasons given with each result.

The ranker writes nothing: it reads users through the profile service and items (with their
cached vectors) through the item store, so the caches it uses are invalidated by their writers.

Example:
    >>> ranker = Ranker(store, schema, items, users, RecommenderConfig())
    >>> ranker.recommend("u1", k=5, filter={"category": "Electronics"})
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from .catalog import canonical_id, clean_query_text
from .encoders import Encoder, l2_normalize
from .errors import ConfigError, NotIndexedError, UnknownUserError
from .items import ItemStore
from .profiles import pool_vectors
from .ranking import RankingRules, Recommendation, Results, explain, mmr
from .schema import ITEMS, STORE_MANAGED_KEYS, Schema
from .store import Hit, VectorStore, point_id
from .store.base import Filter, ScoreFormula, iso_datetime
from .users import ProfileService

if TYPE_CHECKING:  # the settings model is defined (and exported) with the facade
    from .recommender import RecommenderConfig


class Ranker:
    """Top-k items for a user, a text, an item, or by popularity.

    Args:
        store: the vector store.
        schema: the layout, and filters typed against the payload indexes.
        items: item points and their cached vectors.
        users: stored user points (cached on the embedded store).
        encoder: encodes search texts.
        config: `max_k`, the default diversity, the unknown-user policy, the collaborative and
            popularity weights, and the strength of negatives.
    """

    def __init__(
        self, store: VectorStore, schema: Schema, items: ItemStore, users: ProfileService, encoder: Encoder, config: RecommenderConfig
    ) -> None:
        self.store = store
        self.schema = schema
        self.items = items
        self.users = users
        self.encoder = encoder
        self.config = config

    def recommend(
        self, user_id: Any, k: int, filter: dict[str, Any] | None, exclude_seen: bool, diversity: float | None,
        explain_results: bool, negatives: list[Any] | None, rules: RankingRules | dict | None,
    ) -> Results:
        """The top-k items for a user (`Recommender.recommend` documents the arguments and their defaults)."""
        k = self.check_k(k)
        uid = canonical_id(user_id, "user_id")
        flt = self.schema.filter(filter)
        rules = self.check_rules(rules)
        pushed = self._negatives(negatives)
        hits = list(self.users.read([uid]).values())
        if not hits:
            if self.config.unknown_user == "raise":
                raise UnknownUserError(
                    f"User {uid!r} has no recorded events. Record some with record(), give "
                    "interests with set_interests(), or use unknown_user='popular'."
                )
            return self._popular(k, flt, list(pushed))
        profile = hits[0].payload  # as stored (not validated): the query needs `seen`, the reasons the history
        disliked = profile.get("negatives", {})
        excluded = [*(profile.get("seen", []) if exclude_seen else []), *disliked, *pushed]
        flt.exclude_ids = [point_id("item", i) for i in dict.fromkeys(excluded)]
        if not profile.get("history") and not profile.get("interests"):
            return self._popular(k, flt, [])  # only dislikes so far: nothing to be near yet
        layout = self.schema.layout
        stored = hits[0].vector
        query = layout.query(layout.text_part(stored), layout.cf_part(stored), **self._weights(rules))
        query = self._push_down(query, disliked, self.config.profile.negative_weight)
        query = self._push_down(query, pushed, self.config.profile.request_negative_weight)
        return self._rank(query, k, flt, diversity, profile if explain_results else None, rules)

    def search(
        self, text: str, k: int, filter: dict[str, Any] | None, diversity: float | None, rules: RankingRules | dict | None
    ) -> Results:
        """Items closest to a free text, by text alone (see `Recommender.search`)."""
        text = clean_query_text(text)
        query = self.schema.layout.query(self.encoder.encode_query(text))
        words = {w.strip(".,;:!?").lower() for w in text.split()}
        basis = {"tag_counts": dict.fromkeys(words, 1.0), "lead": f"matches {text[:60]!r}"}
        return self._rank(query, self.check_k(k), self.schema.filter(filter), diversity, basis, self.check_rules(rules))

    def similar(
        self, item_id: Any, k: int, filter: dict[str, Any] | None, diversity: float | None,
        negatives: list[Any] | None, rules: RankingRules | dict | None,
    ) -> Results:
        """Items closest to a given item, itself excluded (see `Recommender.similar`)."""
        iid = canonical_id(item_id)
        anchor = self.items.hits([iid], with_vectors=True)[0]
        flt = self.schema.filter(filter)
        pushed = self._negatives(negatives)
        flt.exclude_ids = [anchor.id, *(point_id("item", i) for i in pushed)]
        layout = self.schema.layout
        cf = l2_normalize(layout.cf_part(anchor.vector)) if layout.hybrid else None
        rules = self.check_rules(rules)
        query = layout.query(layout.text_part(anchor.vector), cf, **self._weights(rules))
        p = anchor.payload
        basis = {
            "history": [{"item_id": iid, "name": p.get("name", iid)}],
            "tag_counts": dict.fromkeys(p.get("tags", []), 1.0),
            "category_counts": {p["category"]: 1.0} if p.get("category") else {},
        }
        query = self._push_down(query, pushed, self.config.profile.request_negative_weight)
        return self._rank(query, self.check_k(k), flt, diversity, basis, rules)

    def popular(self, k: int, filter: dict[str, Any] | None) -> Results:
        """The items with the most distinct users, most popular first."""
        return self._popular(self.check_k(k), self.schema.filter(filter), [])

    def check_k(self, k: Any) -> int:
        """`k` as an int within `max_k` and the catalogue size (`ConfigError` if not a valid k)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k={k!r} is not valid; expected an integer >= 1, e.g. k=10.")
        if k > self.config.max_k:
            raise ConfigError(
                f"k={k} is larger than max_k={self.config.max_k}; ask for fewer results or raise "
                "RecommenderConfig.max_k."
            )
        if not self.store.has_collection(ITEMS):
            raise NotIndexedError("No items are indexed yet; call index_items() with a catalog first.")
        return int(min(k, max(self.store.count(ITEMS), 1)))

    def check_rules(self, rules: RankingRules | dict | None) -> RankingRules | None:
        """Validated rules: boosted fields numeric or bool, the decay field a date."""
        if rules is None:
            return None
        if isinstance(rules, dict):
            try:
                rules = RankingRules(**rules)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ConfigError(
                    f"rules: {'.'.join(map(str, first['loc']))}: {first['msg']} (got {first.get('input')!r}); see RankingRules."
                ) from None
        kinds = self.schema.index_kinds()
        for name in rules.boost:
            if kinds.get(name) not in ("integer", "float", "bool"):
                numeric = sorted(f for f, kind in kinds.items() if kind in ("integer", "float", "bool") and f not in STORE_MANAGED_KEYS)
                raise ConfigError(
                    f"rules.boost on {name!r}: it is not a numeric or true/false catalog field; boost one of: "
                    f"{', '.join(numeric) or '(none in this catalog)'}."
                )
        if rules.decay is not None and kinds.get(rules.decay.field) != "datetime":
            dates = sorted(f for f, kind in kinds.items() if kind == "datetime")
            raise ConfigError(
                f"rules.decay on {rules.decay.field!r}: it is not a date field (ISO dates such as "
                f"'2026-11-01' in the catalog); date fields: {', '.join(dates) or '(none in this catalog)'}."
            )
        if rules.decay is not None and rules.decay.target is not None and iso_datetime(rules.decay.target) is None:
            raise ConfigError(f"rules.decay.target {rules.decay.target!r} is not an ISO date such as '2026-12-01'.")
        return rules

    # internals ---------------------------------------------------------------------------------
    def _popular(self, k: int, flt: Filter, excluded: list[str]) -> Results:
        if excluded:
            flt.exclude_ids = [*flt.exclude_ids, *(point_id("item", i) for i in excluded)]
        hits = self.store.top_by(ITEMS, "popularity", k, flt)
        return Results(
            Recommendation.from_hit(h, "popular", score=float(h.payload.get("popularity", 0.0)), score_kind="popularity")
            for h in hits
        )

    def _negatives(self, item_ids: list[Any] | None) -> dict[str, float]:
        """Per-call negative examples (item ids, each of strength 1); unknown ids are an error."""
        if not item_ids:
            return {}
        if isinstance(item_ids, (str, int)):
            item_ids = [item_ids]
        ids = [canonical_id(i) for i in item_ids]
        self.items.hits(ids)  # raises NotIndexedError naming an unknown id
        return dict.fromkeys(ids, 1.0)

    def _push_down(self, query: np.ndarray, negatives: dict[str, float], beta: float) -> np.ndarray:
        """The query minus `beta` x the strength-weighted mean of the negative items' vectors
        (text and collaborative parts weighted as in the query): items near what the user
        rejected score lower, in the same single dot-product query."""
        if not negatives or beta <= 0:
            return query
        vectors = self.items.vectors(list(negatives))
        if not vectors:
            return query
        layout, cfg = self.schema.layout, self.config.collaborative
        text = pool_vectors({i: layout.text_part(v) for i, v in vectors.items()}, negatives)
        cf = pool_vectors({i: layout.cf_part(v) for i, v in vectors.items()}, negatives) if layout.hybrid else None
        if text is None:
            return query
        return (query - beta * layout.query(text, cf, weight=cfg.weight, popularity_weight=0.0)).astype(np.float32)

    def _rank(
        self, vector: np.ndarray, k: int, flt: Filter, diversity: float | None, profile: dict[str, Any] | None, rules: RankingRules | None = None
    ) -> Results:
        """Query the items; with a `profile` (a stored profile's payload, or the same keys made
        for a search or an anchor item), give reasons drawn from it; `rules` apply inside the
        engine's ranking (boosts, decay), or as exclusions (hide) and leading results (pin)."""
        diversity = self.config.diversity if diversity is None else diversity
        pinned: list[Hit] = []
        formula = None
        if rules is not None:
            hidden = set(rules.hide)
            pinned = [h for h in self.items.hits([i for i in rules.pin if i not in hidden], missing_ok=True)][:k]
            flt.exclude_ids = [*flt.exclude_ids, *(point_id("item", i) for i in hidden), *(h.id for h in pinned)]
            formula = self._formula(rules)
            k -= len(pinned)
        hits: list[Hit] = []
        if k > 0:
            fetch = min(self.config.max_k, k * 4) if diversity > 0 else k
            hits = self.store.query(ITEMS, vector, fetch, flt, with_vectors=diversity > 0, formula=formula)
            hits = mmr(vector, hits, k, diversity) if diversity > 0 else hits
        leading = [Recommendation.from_hit(h, "pinned", score=0.0, score_kind="pinned") for h in pinned]
        if profile is None:
            return Results([*leading, *(Recommendation.from_hit(h) for h in hits)])
        recent = {e["item_id"]: e["name"] for e in profile.get("history", [])[-20:]}
        hit_ids = [str(h.payload.get("item_id")) for h in hits]
        by_id = self.items.vectors(list(recent) + hit_ids)
        names = [n for i, n in recent.items() if i in by_id]
        history = np.stack([by_id[i] for i in recent if i in by_id]) if names else None
        found = history is not None and all(i in by_id for i in hit_ids) and hit_ids
        nearest = (np.stack([by_id[i] for i in hit_ids]) @ history.T).argmax(axis=1) if found else None
        lead = profile.get("lead")
        if lead is None and not names and profile.get("interests"):
            lead = "for your interests: " + ", ".join(profile["interests"][:3])
        reasons = explain(hits, names, nearest, profile.get("tag_counts", {}), profile.get("category_counts", {}), lead)
        return Results([*leading, *(Recommendation.from_hit(h, r) for h, r in zip(hits, reasons))])

    def _formula(self, rules: RankingRules) -> ScoreFormula | None:
        if not rules.boost and rules.decay is None:
            return None
        decay = rules.decay
        target = iso_datetime(decay.target) if decay and decay.target else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        kinds = self.schema.index_kinds()
        return ScoreFormula(
            boosts=tuple(rules.boost.items()),
            bool_fields=tuple(f for f in rules.boost if kinds.get(f) == "bool"),
            decay_field=decay.field if decay else None,
            decay_target=target,
            decay_scale_s=decay.scale_days * 86400.0 if decay else 0.0,
            decay_weight=decay.weight if decay else 0.0,
            decay_kind=decay.kind if decay else "exp",
            candidates=rules.candidates,
        )

    def _weights(self, rules: RankingRules | None) -> dict[str, float]:
        """The collaborative and popularity weights of a query (configured, or the request's)."""
        cfg = self.config.collaborative
        weight = cfg.weight if rules is None or rules.collaborative_weight is None else rules.collaborative_weight
        popularity = cfg.popularity_weight if rules is None or rules.popularity_weight is None else rules.popularity_weight
        return {"weight": weight, "popularity_weight": popularity}

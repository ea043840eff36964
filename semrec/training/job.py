"""`finetune`: catalog + events in, a fine-tuned model folder (with its card) out.

Leave-last-out split (the evaluation harness's): pairs come from the validation split's training
events (each user's last two events are never used), validation NDCG@10 picks the checkpoint
and stops early, and the test split measures the base and the fine-tuned model with the same
scorer (`semrec.evaluation.SemrecScorer` with the text-only configuration: summary + pooled
items under the same `ProfileConfig`) and, with `hybrid=` (a `RecommenderConfig`), also with
that configuration (text user vector + collaborative vector + popularity prior for the default
`RecommenderConfig()`, what semrec serves).

Example:
    >>> report = finetune("catalog.csv", "events.csv", "models/shop-ft", config=TrainConfig(max_steps=200))  # doctest: +SKIP
    >>> report.metrics["test"]["after"]["ndcg@10"]                                                           # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd

from ..catalog import load_catalog
from ..datasets import Dataset, load_dataset
from ..encoders import load_encoder
from ..encoders.base import resolve_model
from ..errors import ConfigError
from ..profiles import ProfileConfig
from .card import write_card
from .pairs import history_pairs
from .trainer import (
    LiveEncoder,
    TrainConfig,
    check_trainable,
    load_model,
    mine_negatives,
    pick_device,
    train,
)

if TYPE_CHECKING:
    from ..recommender import RecommenderConfig

log = logging.getLogger(__name__)

Method = Literal["auto", "full", "adapter"]
METHODS = ("auto", "full", "adapter")


def metric_values(result: dict, *, errors: bool = False) -> dict[str, float]:
    """The harness's metrics as floats (means); with `errors`, also `<metric>_se` (standard
    error over users) and `<metric>_n` (users) for every averaged metric."""
    out = {key: float(getattr(v, "mean", v)) for key, v in result.items()}
    if errors:
        for key, v in result.items():
            if hasattr(v, "se"):
                out[f"{key}_se"] = float(v.se)
                out[f"{key}_n"] = int(v.n)
    return out


class SplitEvaluator:
    """semrec on one split, for any encoder: profiles and summary texts are built once; each
    call encodes the items and summaries and returns the harness's metrics (means).

    Every measurement is `semrec.evaluation.SemrecScorer`, the scorer of what a `Recommender`
    serves: a plain call uses the text-only configuration under `profile`
    (`semrec.evaluation.text_only(profile)`); `measure(encoder, config)` uses any
    `RecommenderConfig` (e.g. `RecommenderConfig()`, the shipped default). `data` and `targets`
    are the harness's `TrainData` and `EvalTargets` of the split, for evaluating other methods on
    exactly the same users and catalogue.

    Example:
        >>> val_eval = SplitEvaluator(dataset, val_split)      # doctest: +SKIP
        >>> val_eval(load_encoder(backend="torch"))["ndcg@10"]                # doctest: +SKIP
        >>> val_eval.measure(encoder, RecommenderConfig(), errors=True)["ndcg@10_se"]   # doctest: +SKIP
    """

    def __init__(self, dataset: Dataset, split, profile: ProfileConfig | None = None, *, k: int = 10, seed: int = 0) -> None:
        from ..evaluation.protocol import EvalTargets, TrainData
        from ..evaluation.semantic import UserParts

        self.profile = profile or ProfileConfig()
        self.k = k
        self.seed = seed
        self.split = split
        self.items = load_catalog(dataset.catalog(split.tag_cutoff)).items
        self.data = TrainData.build(split.train, self.items)
        self.targets = EvalTargets.build(split, self.data)
        self.parts = UserParts(self.data, self.targets.users, self.profile)

    def __call__(self, encoder) -> dict[str, float]:
        return self.measure(encoder)

    def measure(self, encoder, config: RecommenderConfig | None = None, *, errors: bool = False) -> dict[str, float]:
        """Metrics of `encoder` under `SemrecScorer(item_vectors, encoder, config)`; `config`
        None is the text-only configuration under this evaluator's profile. See
        `metric_values` for `errors`."""
        from ..evaluation.hybrid import SemrecScorer, text_only
        from ..evaluation.protocol import evaluate

        config = config or text_only(self.profile)
        same = config.profile.model_dump(exclude={"text_weight"}) == self.profile.model_dump(exclude={"text_weight"})
        item_vectors = encoder.encode([i.text for i in self.items])
        scorer = SemrecScorer(item_vectors, encoder, config, seed=self.seed, parts=self.parts if same else None)
        result = evaluate(scorer.fit(self.data), self.data, self.targets, k=self.k)
        return metric_values(result, errors=errors)


@dataclass
class FinetuneReport:
    """What `finetune` did; `info` is what the model card records."""

    out: Path
    method: str
    metrics: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    #: the fine-tuned encoder in memory (the same vectors as the saved folder gives; for the
    #: adapter it reuses the base model's cached vectors) and the base encoder
    encoder: object | None = field(default=None, repr=False)
    base: object | None = field(default=None, repr=False)


def _method(method: str, device: str) -> str:
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is not valid; expected one of {', '.join(METHODS)}.")
    if method == "auto":
        return "full" if device != "cpu" else "adapter"
    return method


def finetune(
    catalog: pd.DataFrame | str | Path | Dataset,
    events: pd.DataFrame | str | Path | None,
    out: str | Path,
    *,
    base_model: str | Path | None = None,
    method: Method = "auto",
    config: TrainConfig | None = None,
    profile: ProfileConfig | None = None,
    max_per_user: int | None = 5,
    max_pairs: int | None = None,
    item_pairs: bool = True,
    item_pairs_per_user: int | None = 50,
    evaluate_test: bool = True,
    cache_dir: str | Path | None = None,
    hybrid: RecommenderConfig | None = None,
) -> FinetuneReport:
    """Fine-tune the encoder on interactions and save it (safetensors) with a model card.

    Args:
        catalog / events: files or DataFrames (see `semrec.datasets.load_dataset`), or a
            `Dataset` as `catalog` with `events=None`.
        out: the model folder to write (sentence-transformers format).
        base_model: the model to start from (None: the packaged all-MiniLM-L6-v2).
        method: "full" fine-tunes every weight (the GPU default); "adapter" trains a residual
            layer on the frozen model's cached vectors (the CPU default: minutes, not hours);
            "auto" picks by device.
        config: `TrainConfig` (steps, time budget, batch size, seed, ...).
        profile: the `ProfileConfig` the recommender uses; summaries are written with it.
        max_per_user: pairs from each user's last N training events (None: all).
        max_pairs: at most this many history pairs (drawn at random); None: for "full", what
            `max_steps` batches can use; for "adapter", all.
        item_pairs: add item-item co-occurrence pairs (an item met among the 5 before -> the
            event's item) from each user's last `item_pairs_per_user` training events.
        evaluate_test: also measure base and fine-tuned model on the test split.
        cache_dir: where base-model vectors are cached between runs (None: memory only).
        hybrid: a `RecommenderConfig` (e.g. `RecommenderConfig()`, what semrec serves by
            default): the test split also measures base and fine-tuned model with
            `SemrecScorer(item_vectors, encoder, hybrid)`, as metrics["test_hybrid"]. Validation
            (checkpoint, early stopping) stays on the text-only scorer.

    Returns:
        A `FinetuneReport` (folder, method, before/after metrics, the card's content).
    """
    from ..evaluation.cache import CachedEncoder
    from ..evaluation.splits import leave_last_out

    check_trainable(base_model)  # before any data is read
    config = config or TrainConfig()
    profile = profile or ProfileConfig()
    device = pick_device(config.device)
    method = _method(method, device)
    started = time.perf_counter()
    dataset = catalog if isinstance(catalog, Dataset) else load_dataset(catalog, events)
    val, test = leave_last_out(dataset.events)
    validator = SplitEvaluator(dataset, val, profile, seed=config.seed)
    if max_pairs is None and method == "full":
        max_pairs = config.batch_size * config.max_steps
    pairs = history_pairs(val.train, validator.items, profile, max_per_user=max_per_user, limit=max_pairs, seed=config.seed)
    if item_pairs:
        pairs += history_pairs(
            val.train, validator.items, profile, max_per_user=item_pairs_per_user, item_pairs=True,
            history=False, seed=config.seed,
        )
    if len(pairs) < 2:
        raise ConfigError(
            f"Only {len(pairs)} training pair(s) could be made from {len(val.train)} training events; "
            "fine-tuning needs users with at least 4 events (2 are held out for validation and test)."
        )
    log.info("%d training pairs (%d history, %d item) from %d training events", len(pairs),
             sum(p.kind == "history" for p in pairs), sum(p.kind == "item" for p in pairs), len(val.train))
    base_name, _ = resolve_model(base_model)
    base = CachedEncoder(load_encoder(base_model, backend="torch", device=device), cache_dir)
    if method == "full":
        model = load_model(base_model, device=device, max_seq_length=config.max_seq_length)
        negatives = None
        if config.hard_negatives:
            user_texts: dict[str, set[str]] = {}
            text_of = {i.item_id: i.text for i in validator.items}
            for user, item in zip(val.train["user_id"].astype(str), val.train["item_id"].astype(str)):
                user_texts.setdefault(user, set()).add(text_of[item])
            negatives = mine_negatives(base, pairs, [i.text for i in validator.items], user_texts,
                                       margin=config.negative_margin, seed=config.seed)
        result = train(model, pairs, config, validate=validator, negatives=negatives)
        tuned = LiveEncoder(model, name=str(out))
    else:
        from .adapter import AdaptedEncoder, attach, train_adapter

        anchors = base.encode([p.anchor for p in pairs])
        positives = base.encode([p.positive for p in pairs])
        adapter, result = train_adapter(anchors, positives, pairs, config, validate=validator, base=base)
        model = attach(load_model(base_model, device=device), adapter)
        tuned = AdaptedEncoder(base, adapter, name=str(out))
    metrics = {"validation": {"before": result.before or {}, "after": result.best or {}}}
    if evaluate_test:
        tester = SplitEvaluator(dataset, test, profile, seed=config.seed)
        metrics["test"] = {"before": tester.measure(base, errors=True), "after": tester.measure(tuned, errors=True)}
        if hybrid is not None:
            metrics["test_hybrid"] = {
                "before": tester.measure(base, hybrid, errors=True), "after": tester.measure(tuned, hybrid, errors=True),
            }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out), create_model_card=False, safe_serialization=True)
    from .. import __version__

    info = {
        "name": out.name,
        "semrec_version": __version__,
        "base_model": base_name,
        "method": method,
        "data": {
            "dataset": dataset.name,
            "users": int(dataset.events["user_id"].nunique()),
            "items": len(dataset.items),
            "events": len(dataset.events),
            "split": "leave-last-out: pairs from each user's events before their last two; "
                     "validation = second-to-last event, test = last event",
            "training_events": len(val.train),
            "pairs": len(pairs),
            "history_pairs": sum(p.kind == "history" for p in pairs),
            "item_pairs": sum(p.kind == "item" for p in pairs),
            "max_per_user": max_per_user,
            "item_pairs_per_user": item_pairs_per_user if item_pairs else 0,
        },
        "profile": profile.model_dump(),
        "hybrid": hybrid.model_dump(include={"profile", "collaborative"}) if hybrid is not None else None,
        "config": config.model_dump(),
        "training": result.to_dict(),
        "metrics": metrics,
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    write_card(out, info)
    return FinetuneReport(out, method, metrics, info, encoder=tuned, base=base)

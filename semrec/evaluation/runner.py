"""One benchmark run: load, split, tune on validation, then every method on the test split."""

from __future__ import annotations

import importlib.util
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..catalog import load_catalog
from ..datasets import Dataset, load_dataset, load_movielens
from ..encoders import load_encoder
from ..errors import ConfigError
from ..profiles import ProfileConfig
from ..recommender import RecommenderConfig
from .baselines import ALS, ItemKNN, Popularity
from .cache import CachedEncoder
from .hybrid import SemrecScorer, label, text_only
from .online import evaluate_recommender
from .protocol import EvalTargets, TrainData, evaluate
from .report import write_report
from .splits import Split, leave_last_out, temporal_split
from .tuning import DEFAULT_GRID, Trial, grid_search, select, setting

log = logging.getLogger(__name__)

ITEMKNN_GRID = (10, 20, 50, 100)
ALS_GRID = [dict(factors=f, alpha=a, regularization=r) for f in (64, 128) for a in (1.0, 2.0, 5.0) for r in (0.01, 0.1)]


@dataclass
class Prepared:
    """A split made ready: catalogue items (text with the split's tags), their vectors, indices."""

    split: Split
    data: TrainData
    targets: EvalTargets
    item_vectors: np.ndarray


def prepare(dataset: Dataset, split: Split, encoder: CachedEncoder) -> Prepared:
    catalog = load_catalog(dataset.catalog(split.tag_cutoff))
    if catalog.rejects:
        log.warning("%d catalogue rows rejected, e.g. %s", len(catalog.rejects), catalog.rejects[0].reason)
    item_vectors = encoder.encode([i.text for i in catalog.items], show_progress=log.isEnabledFor(logging.INFO))
    train = split.train[split.train["item_id"].isin({i.item_id for i in catalog.items})]
    data = TrainData.build(train, catalog.items)
    return Prepared(split, data, EvalTargets.build(split, data), item_vectors)


def run_benchmark(
    path: str | Path | None = None,
    *,
    dataset: Dataset | None = None,
    catalog: str | Path | None = None,
    events: str | Path | None = None,
    tags: str | Path | None = None,
    protocol: Literal["leave-last-out", "temporal"] = "leave-last-out",
    k: int = 10,
    exclude_seen: bool = True,
    tune: bool = True,
    baselines: bool = True,
    online: bool = True,
    model: str | None = None,
    backend: str = "torch",
    encoder=None,
    config: RecommenderConfig | None = None,
    out_dir: str | Path | None = "benchmarks/out",
    cache_dir: str | Path | None = "benchmarks/out/cache",
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate semrec and its collaborative peers on one data set, in one run.

    Args:
        path: a MovieLens folder (movies.csv, ratings.csv, tags.csv); or give `catalog` +
            `events` (+ `tags`) files for any data set, or a loaded `dataset`.
        protocol: "leave-last-out" (per user: last event = test, second-to-last = validation)
            or "temporal" (one global time cut; last 10% of events = test, 10% before = validation).
        exclude_seen: rank only items outside each user's training history (default).
        tune: run the validation grids (ItemKNN k, ALS, semrec's levers) and report the
            levers table; the tuned semrec configuration is reported beside the default.
        model / backend: the encoder (`semrec.load_encoder(model, backend)`); "torch" (fp32) is
            the reference, "auto" picks the library's fastest guarded backend.
        config: the `RecommenderConfig` to report as "semrec (default)" (None:
            `RecommenderConfig()`, what semrec ships); the offline row scores it with
            `SemrecScorer`, the online row serves it from a `Recommender`.
        online: also measure the live path: a `Recommender` on an embedded Qdrant Edge store,
            loaded with the training events through `record_many`, fitted, and queried per user.
        out_dir: where report.json and report.md are written (None: nowhere).

    Returns:
        The report: {"rows": [...], "levers": [...], "meta": {...}}.

    Example:
        >>> report = run_benchmark("data/ml-latest-small")     # doctest: +SKIP
    """
    started = time.time()
    random.seed(seed)
    np.random.seed(seed)
    if dataset is None:
        if path is not None:
            dataset = load_movielens(path)
        elif catalog is not None and events is not None:
            dataset = load_dataset(catalog, events, tags)
        else:
            raise ConfigError("Pass a MovieLens folder (path=...) or catalog= and events= files to evaluate on.")
    if protocol == "leave-last-out":
        val_split, test_split = leave_last_out(dataset.events)
    elif protocol == "temporal":
        val_split, test_split = temporal_split(dataset.events)
    else:
        raise ConfigError(f"protocol={protocol!r} is not known; expected 'leave-last-out' or 'temporal'.")
    enc = CachedEncoder(encoder or load_encoder(model, backend), cache_dir)
    val = prepare(dataset, val_split, enc)
    test = prepare(dataset, test_split, enc)
    default = config or RecommenderConfig()
    has_implicit = importlib.util.find_spec("implicit") is not None
    if baselines and not has_implicit:
        log.warning("implicit is not installed: the ALS rows are skipped (pip install 'semrec[eval]').")
    opts = dict(k=k, exclude_seen=exclude_seen)

    def run(scorer, prepared: Prepared) -> dict:
        t0 = time.time()
        scorer.fit(prepared.data)
        metrics = evaluate(scorer, prepared.data, prepared.targets, item_vectors=prepared.item_vectors, **opts)
        log.info("%s on %s: ndcg@%d %.4f (%.1fs)", scorer.name, prepared.split.name, k, metrics[f"ndcg@{k}"].mean, time.time() - t0)
        return metrics

    rows: list[dict] = []
    levers: list[dict] = []
    chosen: dict[str, Any] = {}
    semrec = lambda cfg, name=None: SemrecScorer(test.item_vectors, enc, cfg, seed=seed, name=name)  # noqa: E731

    if baselines:
        rows.append(_row("popularity", "baseline", run(Popularity(), test)))
        knn_val = {n: run(ItemKNN(n), val) for n in (ITEMKNN_GRID if tune else (10,))}
        best_knn = max(knn_val, key=lambda n: knn_val[n][f"ndcg@{k}"].mean)
        chosen["itemknn_k"] = best_knn
        rows.append(_row("ItemKNN (k=10)", "baseline", run(ItemKNN(10), test)))
        if best_knn != 10:
            rows.append(_row(f"ItemKNN (k={best_knn}, tuned)", "baseline", run(ItemKNN(best_knn), test)))
        if has_implicit:
            grid = ALS_GRID if tune else [dict(factors=64, alpha=2.0, regularization=0.01)]
            als_val = [(p, run(ALS(**p, seed=seed), val)) for p in grid]
            best_als, best_als_metrics = max(als_val, key=lambda pm: pm[1][f"ndcg@{k}"].mean)
            chosen["als"] = best_als
            rows.append(_row("ALS (64 factors, alpha 2)", "baseline", run(ALS(64, 2.0, seed=seed), test)))
            if best_als != dict(factors=64, alpha=2.0, regularization=0.01):
                als_name = f"ALS ({best_als['factors']} factors, alpha {best_als['alpha']:g}, reg {best_als['regularization']:g}, tuned)"
                rows.append(_row(als_name, "baseline", run(ALS(**best_als, seed=seed), test)))
            peers_val = [m for _, m in als_val] + list(knn_val.values())
            peer_cov_val = best_als_metrics[f"coverage@{k}"]
        else:
            peers_val = list(knn_val.values())
            peer_cov_val = knn_val[best_knn][f"coverage@{k}"]
        peer_ndcg_val = max(m[f"ndcg@{k}"].mean for m in peers_val)
        peer_cold_val = max(m[f"cold_recall@{k}"].mean for m in peers_val)
    else:
        peer_ndcg_val, peer_cov_val, peer_cold_val = 0.0, 0.0, 0.0

    zero_shot = {
        "semrec zero-shot: text summary only": text_only(ProfileConfig(text_weight=1.0)),
        "semrec zero-shot: pooled history only": text_only(ProfileConfig(text_weight=0.0)),
        "semrec zero-shot: summary + pooled (library default profile)": text_only(),
    }
    for name, cfg in zero_shot.items():
        rows.append(_row(name, "semrec", run(semrec(cfg, name), test), cfg))

    if tune:
        trials = grid_search(val.data, val.targets, val.item_vectors, enc, grid=DEFAULT_GRID, base=default, seed=seed, **opts)
        # the default must blend the history's text summary with the pooled items (text_weight > 0):
        # the summary is what carries declared interests and category/tag tastes
        blends = [t for t in trials if t.config.profile.text_weight > 0]
        best = select(blends, k=k, min_ndcg=peer_ndcg_val, min_coverage=2 * peer_cov_val, min_cold_recall=peer_cold_val)
        chosen["semrec"] = _settings(best.config)
        levers = _lever_table(trials, best, DEFAULT_GRID)
        levers.append({"lever": "default", "value": label(default), "validation": _metrics_json(_find(trials, default))})
    rows.append(_row("semrec (default)", "semrec", run(semrec(default, "semrec (default)"), test), default))
    if online:
        metrics, timing = evaluate_recommender(test.data, test.targets, test.item_vectors, enc, default, **opts)
        rows.append({**_row("semrec (default), served by Recommender on Qdrant Edge", "semrec", metrics, default), "timing": timing})
        log.info("online Recommender: ndcg@%d %.4f %s", k, metrics[f"ndcg@{k}"].mean, timing)
    if tune and best.config != default:
        rows.append(_row("semrec (tuned on this run's validation)", "semrec", run(semrec(best.config), test), best.config))

    report = {
        "meta": {
            "dataset": dataset.name,
            "protocol": protocol,
            "k": k,
            "exclude_seen": exclude_seen,
            "items": int(test.data.n_items),
            "users": int(len(test.targets.users)),
            "cold_targets": int(sum(int((test.data.counts[t] <= 2).any()) for t in test.targets.targets)),
            "model": enc.fingerprint.to_dict(),
            "seed": seed,
            "selection": (
                "semrec: best validation NDCG@k among blended configurations (text_weight > 0) with NDCG@k >= every CF peer's, "
                "coverage@k >= 2x the tuned ALS's and cold-slice recall above every CF peer's "
                "(conditions dropped in that order from the last when none qualifies)"
            ),
            "chosen": chosen,
            "seconds": round(time.time() - started, 1),
        },
        "rows": rows,
        "levers": levers,
    }
    if out_dir is not None:
        write_report(report, Path(out_dir))
    return report


def _row(name: str, kind: str, metrics: dict, config: RecommenderConfig | None = None) -> dict:
    row = {"method": name, "kind": kind, "metrics": _metrics_json(metrics)}
    if config is not None:
        row["config"] = _settings(config)
    return row


def _settings(config: RecommenderConfig) -> dict:
    """The settings the scorer reads (profile and collaborative)."""
    return config.model_dump(include={"profile", "collaborative"})


def _metrics_json(metrics: dict | None) -> dict | None:
    if metrics is None:
        return None
    return {key: value.to_dict() if hasattr(value, "to_dict") else value for key, value in metrics.items()}


def _find(trials: list[Trial], config: RecommenderConfig) -> dict | None:
    for t in trials:
        if t.config == config:
            return t.metrics
    return None


def _lever_table(trials: list[Trial], best: Trial, grid: dict) -> list[dict]:
    """Each setting of the grid varied alone around the selected configuration (validation metrics)."""
    rows = [{"lever": "selected", "value": label(best.config), "validation": _metrics_json(best.metrics)}]
    for path in grid:
        others = [p for p in grid if p != path]
        for t in trials:
            if t is not best and all(setting(t.config, p) == setting(best.config, p) for p in others):
                rows.append({"lever": path, "value": setting(t.config, path), "validation": _metrics_json(t.metrics)})
    return rows

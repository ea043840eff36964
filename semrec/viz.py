"""Helpers for notebooks: tables of a user's history and recommendations, and a 2-D map of the
item space (PCA) with a user and their recommendations marked. Plots use matplotlib."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .errors import require
from .ranking import Results
from .recommender import Recommender


def history_frame(rec: Recommender, user_id: Any) -> pd.DataFrame:
    """A user's recent events, newest first (item, name, category, kind, time)."""
    profile = rec.profile(user_id)
    rows = [
        {"item_id": e.item_id, "name": e.name, "category": e.category, "kind": e.kind,
         "time": pd.Timestamp(e.ts, unit="s", tz="UTC")}
        for e in reversed(profile.history)
    ] if profile else []
    return pd.DataFrame(rows, columns=["item_id", "name", "category", "kind", "time"])


def side_by_side(left: pd.DataFrame, right: pd.DataFrame, names: tuple[str, str] = ("history", "recommended")) -> pd.DataFrame:
    """Two tables next to each other, row by row (e.g. history and recommendations, or before/after)."""
    n = max(len(left), len(right))
    left = left.reset_index(drop=True).reindex(range(n))
    right = right.reset_index(drop=True).reindex(range(n))
    return pd.concat({names[0]: left, names[1]: right}, axis=1)


def pca_2d(vectors: np.ndarray, extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Project rows onto their first two principal components; `extra` rows use the same axes."""
    mean = vectors.mean(axis=0)
    _, _, components = np.linalg.svd(vectors - mean, full_matrices=False)
    axes = components[:2].T
    return (vectors - mean) @ axes, None if extra is None else (np.atleast_2d(extra) - mean) @ axes


def plot_item_space(rec: Recommender, user_id: Any = None, k: int = 10, *, ax=None, level: int = 0):
    """Scatter the item space (PCA), coloured by category (`level` 0 = top level); with a
    `user_id`, mark the user's vector, their history and their top-k recommendations.

    Returns the matplotlib Figure.
    """
    plt = require("matplotlib.pyplot", "notebooks")
    payloads, vectors = rec.item_vectors()
    categories = [_level(p, level) for p in payloads]
    user_vec = rec.user_vector(user_id) if user_id is not None else None
    points, user_point = pca_2d(vectors, user_vec)
    if ax is None:
        fig, ax = plt.subplots(figsize=(9, 7))
    fig = ax.figure
    for name in sorted(set(categories)):
        mask = np.array([c == name for c in categories])
        ax.scatter(points[mask, 0], points[mask, 1], s=12, alpha=0.6, label=name)
    if user_point is not None:
        index = {p["item_id"]: i for i, p in enumerate(payloads)}
        profile = rec.profile(user_id)
        seen = [index[i] for i in profile.seen if i in index]
        recommended = [index[r.item_id] for r in rec.recommend(user_id, k=k) if r.item_id in index]
        ax.scatter(points[seen, 0], points[seen, 1], s=60, facecolors="none", edgecolors="black", label="history")
        ax.scatter(points[recommended, 0], points[recommended, 1], s=90, marker="D", facecolors="none",
                   edgecolors="red", label=f"top {k}")
        ax.scatter(user_point[:, 0], user_point[:, 1], s=250, marker="*", color="gold", edgecolors="black",
                   label=f"user {user_id}")
    ax.set_title("Item space (PCA of item vectors)")
    ax.legend(loc="best", fontsize=8, markerscale=1.5)
    return fig


def results_frame(results: Results) -> pd.DataFrame:
    """Recommendations as a table with rank, score (3 decimals) and the reason."""
    frame = results.to_frame()
    frame.insert(0, "rank", range(1, len(frame) + 1))
    frame["score"] = frame["score"].round(3)
    return frame


def _level(payload: dict, level: int) -> str:
    levels = payload.get("category_levels") or []
    if not levels:
        return "(none)"
    return levels[min(level, len(levels) - 1)]


def metrics_frame(report: dict[str, Any]) -> pd.DataFrame:
    """One row per method of an evaluation report (`semrec.evaluation.run_benchmark`): R@K,
    NDCG@K with standard errors, coverage, and recall on the cold-item slice."""
    k = report["meta"]["k"]
    rows = []
    for row in report["rows"]:
        m = row["metrics"]
        rows.append({
            "method": row["method"],
            f"R@{k}": m[f"recall@{k}"]["mean"], f"R@{k} se": m[f"recall@{k}"].get("se"),
            f"NDCG@{k}": m[f"ndcg@{k}"]["mean"], f"NDCG@{k} se": m[f"ndcg@{k}"].get("se"),
            f"coverage@{k}": m[f"coverage@{k}"],
            f"cold R@{k}": m[f"cold_recall@{k}"]["mean"],
        })
    return pd.DataFrame(rows)


def plot_metrics(report: dict[str, Any], *, ax=None):
    """Bars of R@K and NDCG@K per method, with standard-error whiskers. Returns the Figure."""
    plt = require("matplotlib.pyplot", "notebooks")
    frame = metrics_frame(report)
    k = report["meta"]["k"]
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(frame))
    for offset, metric in ((-0.2, f"R@{k}"), (0.2, f"NDCG@{k}")):
        ax.bar(x + offset, frame[metric], width=0.4, yerr=frame[f"{metric} se"].fillna(0), capsize=3, label=metric)
    ax.set_xticks(x, frame["method"], rotation=30, ha="right", fontsize=8)
    ax.set_title(f"Leave-last-out, full ranking ({report['meta']['dataset']})")
    ax.legend()
    ax.figure.tight_layout()
    return ax.figure


def plot_training(report, *, metric: str = "ndcg@10"):
    """The training-loss curve and validation `metric` by step of a `semrec.training.finetune`
    report. Returns the Figure."""
    plt = require("matplotlib.pyplot", "notebooks")
    training = report.info["training"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    losses = np.asarray(training.get("losses", []), dtype=float)
    left.plot(np.arange(1, len(losses) + 1), losses, lw=0.8)
    left.set(title="training loss", xlabel="step")
    steps = [entry["step"] for entry in training["validation"]]
    values = [_mean(entry["metrics"].get(metric)) for entry in training["validation"]]
    right.plot(steps, values, marker="o")
    right.set(title=f"validation {metric}", xlabel="step")
    fig.tight_layout()
    return fig


def before_after(report) -> pd.DataFrame:
    """Before/after metrics of a fine-tuning report, one row per split and metric."""
    rows = []
    for split, pair in report.metrics.items():
        for name in sorted(set(pair.get("before", {})) | set(pair.get("after", {}))):
            rows.append({"split": split, "metric": name, "before": _mean(pair["before"].get(name)),
                         "after": _mean(pair["after"].get(name))})
    return pd.DataFrame(rows)


def _mean(value) -> float:
    if isinstance(value, dict):
        return float(value.get("mean", float("nan")))
    return float("nan") if value is None else float(value)

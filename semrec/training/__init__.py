"""Fine-tuning the encoder on interaction data, measured before and after.

Pairs (history summary -> next item, and item -> co-occurring item) come from the training split
only; the loss is in-batch-negatives contrastive (sentence-transformers'
MultipleNegativesRankingLoss, cached variant for large batches); validation NDCG@10 from the
evaluation harness picks the checkpoint. `finetune` runs the whole thing and writes a
sentence-transformers model folder (safetensors) with a model card. Serving with the new model
needs a re-index (`semrec.reindex.reindex(catalog, store, model=folder)`, blue-green).

Example:
    >>> from semrec.training import finetune, TrainConfig
    >>> report = finetune("catalog.csv", "events.csv", "models/ft", config=TrainConfig(max_steps=500))  # doctest: +SKIP
"""

from .card import CARD_JSON, read_card, render_card, write_card
from .pairs import Pair, history_pairs, no_duplicate_batches
from .trainer import (
    LiveEncoder,
    TrainConfig,
    TrainResult,
    load_model,
    mine_negatives,
    pick_device,
    train,
)

__all__ = [
    "CARD_JSON",
    "FinetuneReport",
    "LiveEncoder",
    "Pair",
    "SplitEvaluator",
    "TrainConfig",
    "TrainResult",
    "finetune",
    "history_pairs",
    "load_model",
    "mine_negatives",
    "no_duplicate_batches",
    "pick_device",
    "read_card",
    "render_card",
    "train",
    "write_card",
]


def __getattr__(name: str):
    # the job imports the evaluation harness; load it on first use
    if name in ("finetune", "FinetuneReport", "SplitEvaluator"):
        from . import job

        return getattr(job, name)
    raise AttributeError(f"module 'semrec.training' has no attribute {name!r}")

"""Fine-tuning on a CPU budget: a residual adapter on top of the frozen encoder.

Full fine-tuning runs the transformer forward and backward for every pair (~1-6 pairs/s on a
shared 2-core CPU). The adapter instead trains one residual layer, `v' = normalize(v +
tanh(W v + b))` (W, b start at 0, so training starts from the base model), on the base model's
cached vectors, with the same loss (in-batch negatives, no duplicates in a batch) and the same
validation: thousands of steps a minute. The result is still one sentence-transformers model
(Transformer, Pooling, Normalize, Dense(residual), Normalize), saved as safetensors; encoding
with it gives exactly the adapted vectors.

Example:
    >>> adapter, result = train_adapter(anchors, positives, pairs, TrainConfig())  # doctest: +SKIP
    >>> model = attach(load_model(None), adapter)                                  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from .pairs import Pair, log_frequency
from .trainer import TrainConfig, TrainResult, Validate, corrected_loss, run_loop, seed_everything

log = logging.getLogger(__name__)


def _module(dim: int):
    import torch

    class Adapter(torch.nn.Module):
        """normalize(v + tanh(W v + b)), W and b zero at the start."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(dim, dim)
            torch.nn.init.zeros_(self.linear.weight)
            torch.nn.init.zeros_(self.linear.bias)

        def forward(self, v):
            return torch.nn.functional.normalize(v + torch.tanh(self.linear(v)), dim=-1)

    return Adapter()


class AdaptedEncoder:
    """An `Encoder` that applies an adapter to another encoder's (cached) vectors."""

    backend = "torch"

    def __init__(self, base, adapter, name: str = "adapted") -> None:
        self.base, self.adapter, self.name, self.dim = base, adapter, name, base.dim

    @property
    def fingerprint(self):
        from ..encoders.base import ModelFingerprint, weights_digest

        return ModelFingerprint(self.name, weights_digest(self.adapter.state_dict().items()), self.dim)

    def encode(self, texts: Sequence[str], *, batch_size: int = 128, show_progress: bool = False) -> np.ndarray:
        return apply(self.adapter, self.base.encode(texts))

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


def apply(adapter, vectors: np.ndarray) -> np.ndarray:
    """Adapted unit vectors for base vectors (n, dim)."""
    import torch

    with torch.no_grad():
        out = adapter(torch.as_tensor(np.asarray(vectors, dtype=np.float32)))
    return out.numpy().astype(np.float32)


def train_adapter(
    anchors: np.ndarray,
    positives: np.ndarray,
    pairs: Sequence[Pair],
    config: TrainConfig | None = None,
    *,
    validate: Validate | None = None,
    base=None,
) -> tuple[object, TrainResult]:
    """Train an adapter on base vectors of the pairs' anchors and positives (row i = pairs[i]).

    Args:
        anchors / positives: (len(pairs), dim) base-model vectors.
        pairs: the pairs (for batches without duplicate texts or items).
        config: `TrainConfig` (batch_size, max_steps, time_budget, learning_rate, warmup, scale,
            eval_every, patience, metric, seed are used).
        validate: called with an `AdaptedEncoder` over `base` (see `trainer.train`).
        base: the base encoder (needed for validation).

    Returns:
        (the adapter module holding the best validated weights, `TrainResult`).
    """
    import torch

    config = config or TrainConfig()
    if anchors.shape != positives.shape or len(anchors) != len(pairs):
        raise ConfigError(
            f"anchors {anchors.shape} and positives {positives.shape} must both have one row per pair ({len(pairs)})."
        )
    if validate is not None and base is None:
        raise ConfigError("validate needs base= (the encoder whose vectors the adapter transforms).")
    seed_everything(config.seed)
    adapter = _module(anchors.shape[1])
    A = torch.as_tensor(np.asarray(anchors, dtype=np.float32))
    P = torch.as_tensor(np.asarray(positives, dtype=np.float32))
    lr = config.learning_rate or 3e-3
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=lr, weight_decay=config.weight_decay)
    log_q = torch.as_tensor(log_frequency(pairs)) if config.popularity_correction else torch.zeros(len(pairs))
    name = "MultipleNegativesRankingLoss+logQ" if config.popularity_correction else "MultipleNegativesRankingLoss"
    result = TrainResult(loss=f"{name}(scale={config.scale:g}) on an adapter")
    def step(batch) -> "torch.Tensor":
        index = torch.as_tensor(batch)
        loss = corrected_loss(adapter(A[index]), adapter(P[index]), log_q[index], config.scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    encoder = AdaptedEncoder(base, adapter) if validate is not None else None
    run_loop(adapter, optimizer, lr, pairs, config, result, step, validate, encoder)
    log.info("adapter: %d steps in %.1f s (%.0f pairs/s); best step %d", result.steps, result.seconds, result.pairs_per_s, result.best_step)
    return adapter, result


def attach(model, adapter):
    """Append the adapter to a `SentenceTransformer` as Dense(tanh, residual) + Normalize, so
    `model.encode` gives the adapted vectors. Returns the same model."""
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.base.modules.normalize import Normalize

    dim = adapter.linear.in_features
    if int(model.get_embedding_dimension()) != dim:
        raise ConfigError(f"The adapter is for {dim}-d vectors but the model makes {model.get_embedding_dimension()}-d ones.")
    if not any(isinstance(m, Normalize) for m in model):
        model.append(Normalize())
    dense = Dense(
        dim, dim, bias=True,
        init_weight=adapter.linear.weight.detach().clone(), init_bias=adapter.linear.bias.detach().clone(),
        use_residual=True,
    )
    model.append(dense.to(model.device))
    model.append(Normalize())
    return model

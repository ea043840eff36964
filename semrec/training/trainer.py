"""The fine-tuning loop: contrastive loss with in-batch negatives over (anchor, positive) pairs.

A lean loop over sentence-transformers' own model and losses (`MultipleNegativesRankingLoss`,
or `CachedMultipleNegativesRankingLoss` for batches larger than `mini_batch_size`): no
`datasets`/`accelerate` round trip, which matters on a 2-core CPU. Batches hold no duplicate
text or positive item (`no_duplicate_batches`), seeds are fixed, the learning rate warms up
then decays linearly over `max_steps` (or the time budget, whichever runs out first), and a
validation callback (NDCG@10 from the evaluation harness) picks the best checkpoint and stops
early. On a GPU the forward and backward passes run in bf16 autocast.

Example:
    >>> model = load_model(None)                                   # doctest: +SKIP
    >>> result = train(model, pairs, TrainConfig(max_steps=200))   # doctest: +SKIP
    >>> result.best_step, result.pairs_per_s                       # doctest: +SKIP
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..encoders.base import ModelFingerprint, cap_texts, resolve_model, weights_digest
from ..errors import ConfigError, require
from .pairs import Pair, log_frequency, no_duplicate_batches

log = logging.getLogger(__name__)

#: validate(encoder) -> metrics (floats); the key `TrainConfig.metric` is maximised.
Validate = Callable[["LiveEncoder"], dict]


class TrainConfig(BaseModel):
    """How the encoder is fine-tuned.

    Args:
        batch_size: pairs per step (each pair's positive is a negative for every other anchor).
        max_steps: optimiser steps at most.
        time_budget: seconds of training at most (validation not counted); None: no limit.
        learning_rate / warmup / weight_decay: AdamW; warmup is a share of the run.
            learning_rate None: 1e-4 for full fine-tuning, 3e-3 for the adapter.
        scale: the loss's similarity scale (inverse temperature).
        max_seq_length: tokens per text (summaries are ~100 tokens, item texts ~20).
        mini_batch_size: above this batch size the cached (GradCache) loss keeps memory flat
            (used when popularity_correction is off).
        popularity_correction: subtract log(item frequency) from in-batch logits (logQ
            correction, `pairs.log_frequency`); without it in-batch negatives teach the model
            to push popular items down, which costs accuracy (measured on MovieLens).
        hard_negatives: add one mined hard negative per pair (`mine_negatives`).
        negative_margin: a mined negative must score at least this much below the positive
            under the base model (likely false negatives are skipped).
        eval_every: validate every this many steps (and at the start and the end).
        patience: stop after this many validations without improvement.
        metric: the validation metric to maximise.
        seed: for the pair order, dropout and sampling.
        device: "cpu", "cuda", ...; None: a GPU when present.
        bf16: bf16 autocast; None: on CUDA only.
    """

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(64, ge=2)
    max_steps: int = Field(300, ge=1)
    time_budget: float | None = Field(None, gt=0)
    learning_rate: float | None = Field(None, gt=0)
    warmup: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    scale: float = Field(20.0, gt=0)
    max_seq_length: int = Field(128, ge=8)
    mini_batch_size: int = Field(128, ge=1)
    popularity_correction: bool = True
    hard_negatives: bool = False
    negative_margin: float = Field(0.1, ge=0)
    eval_every: int = Field(100, ge=1)
    patience: int = Field(2, ge=1)
    metric: str = "ndcg@10"
    seed: int = 0
    device: str | None = None
    bf16: bool | None = None


@dataclass
class TrainResult:
    """What a training run did: steps, speed, the validation history and the best checkpoint."""

    steps: int = 0
    seconds: float = 0.0
    pairs_seen: int = 0
    best_step: int = 0
    stopped: str = "max_steps"
    device: str = "cpu"
    bf16: bool = False
    loss: str = ""
    history: list[dict] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    @property
    def pairs_per_s(self) -> float:
        return self.pairs_seen / self.seconds if self.seconds else 0.0

    @property
    def before(self) -> dict | None:
        return self.history[0]["metrics"] if self.history else None

    @property
    def best(self) -> dict | None:
        for entry in self.history:
            if entry["step"] == self.best_step:
                return entry["metrics"]
        return None

    def to_dict(self) -> dict:
        return {
            "steps": self.steps,
            "seconds": round(self.seconds, 1),
            "pairs_seen": self.pairs_seen,
            "pairs_per_s": round(self.pairs_per_s, 2),
            "best_step": self.best_step,
            "stopped": self.stopped,
            "device": self.device,
            "bf16": self.bf16,
            "loss": self.loss,
            "losses": [round(x, 5) for x in self.losses],
            "validation": self.history,
        }


def pick_device(device: str | None = None) -> str:
    """`device` if given, else "cuda" when a GPU is present, else "cpu"."""
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_trainable(model: str | Path | None) -> None:
    """Refuse, with a `ConfigError`, a model that cannot be fine-tuned (USE multilingual)."""
    from ..encoders.usem3_backend import USE_MODEL, is_use_model

    if is_use_model(model):
        raise ConfigError(
            f"Model {str(model)!r} ({USE_MODEL}: Google's Universal Sentence Encoder multilingual "
            "v3) cannot be fine-tuned: semrec runs it as fixed numpy weights, with no trainable "
            "graph. Fine-tune a sentence-transformers model instead: base_model=None (the default "
            "all-MiniLM-L6-v2) or, for a catalog that is not English, a multilingual one such as "
            "'sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2' (a local folder or a "
            "name available offline)."
        )


def load_model(model: str | Path | None = None, *, device: str | None = None, max_seq_length: int | None = None):
    """A trainable `SentenceTransformer` (None: the packaged all-MiniLM-L6-v2)."""
    check_trainable(model)
    require("torch", "train")
    from sentence_transformers import SentenceTransformer

    _, source = resolve_model(model)
    try:
        st = SentenceTransformer(source, device=pick_device(device))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Could not load the model {str(model)!r} to fine-tune: {exc}. Pass a local "
            "sentence-transformers folder, a name available offline, or None for the default."
        ) from exc
    if max_seq_length:
        st.max_seq_length = min(max_seq_length, st.max_seq_length or max_seq_length)
    return st


class LiveEncoder:
    """The `Encoder` protocol over a `SentenceTransformer` being trained (evaluation mode while
    it encodes); the fingerprint is of the weights at the time it is read.

    Example:
        >>> enc = LiveEncoder(load_model(None))          # doctest: +SKIP
        >>> enc.encode(["Toy Story (1995)"]).shape       # doctest: +SKIP
        (1, 384)
    """

    backend = "torch"

    def __init__(self, model, name: str = "fine-tuning") -> None:
        self.model = model
        self.name = name
        self.dim = int(model.get_embedding_dimension())

    @property
    def fingerprint(self) -> ModelFingerprint:
        return ModelFingerprint(self.name, weights_digest(self.model.state_dict().items()), self.dim)

    def encode(self, texts: Sequence[str], *, batch_size: int = 128, show_progress: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        try:
            vectors = self.model.encode(
                cap_texts(list(texts)), batch_size=batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=show_progress,
            )
        finally:
            self.model.train(was_training)
        return np.asarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text], batch_size=1)[0]


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def mine_negatives(
    encoder,
    pairs: Sequence[Pair],
    item_texts: Sequence[str],
    user_texts: dict[str, set[str]],
    *,
    margin: float = 0.1,
    top: int = 50,
    seed: int = 0,
) -> list[str]:
    """One hard negative per pair: an item text the base model ranks high for the anchor (among
    its `top`), that the user never met in training, and that scores at least `margin` below
    the pair's positive (so a likely false negative is not punished). Pairs without such a
    candidate get a random item text.
    """
    rng = np.random.default_rng(seed)
    texts = list(dict.fromkeys(item_texts))
    items = encoder.encode(texts)
    anchors = encoder.encode([p.anchor for p in pairs])
    positives = encoder.encode([p.positive for p in pairs])
    out = []
    top = min(top, len(texts))
    for start in range(0, len(pairs), 512):
        scores = anchors[start : start + 512] @ items.T
        best = np.argsort(-scores, axis=1)[:, :top]
        for row, pair in enumerate(pairs[start : start + 512]):
            limit = float(anchors[start + row] @ positives[start + row]) - margin
            banned = user_texts.get(pair.user_id, set())
            choice = None
            for j in best[row]:
                text = texts[j]
                if scores[row, j] < limit and text != pair.positive and text not in banned:
                    choice = text
                    break
            if choice is None:
                choice = texts[int(rng.integers(len(texts)))]
            out.append(choice)
    return out


def corrected_loss(anchors, candidates, log_q, scale: float):
    """In-batch-negatives cross-entropy (MultipleNegativesRankingLoss) with logQ correction:
    anchors (b, d) and candidates (c >= b, d) unit rows, row i's positive is candidate i;
    log_q (c,) is subtracted from every candidate's logit."""
    import torch

    logits = scale * anchors @ candidates.T - log_q[None, :]
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(anchors), device=anchors.device))


def _loss(model, config: TrainConfig):
    from sentence_transformers.sentence_transformer import losses

    if config.popularity_correction:
        return None
    if config.batch_size > config.mini_batch_size:
        return losses.CachedMultipleNegativesRankingLoss(model, scale=config.scale, mini_batch_size=config.mini_batch_size)
    return losses.MultipleNegativesRankingLoss(model, scale=config.scale)


def _lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first `warmup` of the run, then linear decay to 0."""
    if warmup and progress < warmup:
        return max(progress / warmup, 0.02)
    return max(0.0, (1.0 - progress) / (1.0 - warmup)) if warmup < 1 else 0.0


def train(
    model,
    pairs: Sequence[Pair],
    config: TrainConfig | None = None,
    *,
    validate: Validate | None = None,
    negatives: Sequence[str] | None = None,
) -> TrainResult:
    """Fine-tune `model` (a `SentenceTransformer`, changed in place) on `pairs`.

    Args:
        model: from `load_model`; left holding the best validated weights.
        pairs: training pairs (from the training split only).
        config: `TrainConfig`.
        validate: called with a `LiveEncoder` at step 0, every `eval_every` steps and at the
            end; returns metrics whose `config.metric` is maximised (best checkpoint, early
            stopping). None: no validation, the last weights are kept.
        negatives: one hard-negative text per pair (see `mine_negatives`), or None.

    Returns:
        A `TrainResult` (steps, seconds, pairs/s, validation history, best step).
    """
    import torch
    from sentence_transformers.util import batch_to_device

    config = config or TrainConfig()
    lr = config.learning_rate or 1e-4
    if negatives is not None and len(negatives) != len(pairs):
        raise ConfigError(f"negatives has {len(negatives)} entries for {len(pairs)} pairs; expected one per pair.")
    seed_everything(config.seed)
    device = torch.device(pick_device(config.device))
    model.to(device)
    model.max_seq_length = min(config.max_seq_length, model.max_seq_length or config.max_seq_length)
    bf16 = config.bf16 if config.bf16 is not None else device.type == "cuda"
    loss_fn = _loss(model, config)
    log_q = torch.as_tensor(log_frequency(pairs), device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
    )
    loss_name = "MultipleNegativesRankingLoss+logQ" if loss_fn is None else type(loss_fn).__name__
    result = TrainResult(device=device.type, bf16=bf16, loss=f"{loss_name}(scale={config.scale:g})")
    def step(batch) -> "torch.Tensor":
        columns = [[pairs[i].anchor for i in batch], [pairs[i].positive for i in batch]]
        if negatives is not None:
            columns.append([negatives[i] for i in batch])
        features = [batch_to_device(model.preprocess(c), device) for c in columns]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            if loss_fn is not None:
                loss = loss_fn(features, None)
            else:
                embedded = [torch.nn.functional.normalize(model(f)["sentence_embedding"].float(), dim=-1) for f in features]
                index = torch.as_tensor(batch, device=device)
                q = log_q[index]
                if negatives is not None:  # a mined negative is not a sampled one: no correction
                    q = torch.cat([q, torch.zeros_like(q)])
                loss = corrected_loss(embedded[0], torch.cat(embedded[1:]), q, config.scale)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        return loss

    run_loop(model, optimizer, lr, pairs, config, result, step, validate, LiveEncoder(model), log_every=10)
    log.info("trained %d steps in %.0f s (%.1f pairs/s); best step %d", result.steps, result.seconds, result.pairs_per_s, result.best_step)
    return result


def run_loop(module, optimizer, lr: float, pairs: Sequence[Pair], config: TrainConfig, result: TrainResult,
             step, validate: Validate | None, encoder, *, log_every: int = 0) -> TrainResult:
    """The loop every training method shares: batches without duplicates, linear warm-up and
    decay (by steps, or by the time budget), validation of `encoder` at step 0, every
    `eval_every` steps and at the end, early stopping on `config.metric`, and the best weights
    restored into `module`. `step(batch)` runs one optimiser step on a list of pair indices and
    returns the loss."""
    best_value, best_state, bad_rounds = -np.inf, None, 0

    def check(at: int) -> bool:
        """Validate; True when training should stop (patience exhausted)."""
        nonlocal best_value, best_state, bad_rounds
        if validate is None:
            return False
        metrics = {k: float(v) for k, v in validate(encoder).items()}
        if config.metric not in metrics:
            raise ConfigError(f"Validation returned no {config.metric!r} (got {sorted(metrics)}); set TrainConfig.metric.")
        value = metrics[config.metric]
        result.history.append({"step": at, "metrics": metrics})
        log.info("step %d: validation %s = %.4f", at, config.metric, value)
        if value > best_value:
            best_value, bad_rounds, result.best_step = value, 0, at
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            return False
        bad_rounds += 1
        return bad_rounds >= config.patience

    check(0)
    batches = no_duplicate_batches(pairs, config.batch_size, seed=config.seed)
    module.train()
    trained = 0.0  # seconds spent in steps (validation excluded)
    done = 0
    while done < config.max_steps:
        progress = done / config.max_steps
        if config.time_budget:
            progress = max(progress, trained / config.time_budget)
            if progress >= 1:
                result.stopped = "time_budget"
                break
        tick = time.perf_counter()
        batch = next(batches)
        for group in optimizer.param_groups:
            group["lr"] = lr * _lr_factor(progress, config.warmup)
        loss = step(batch)
        done += 1
        trained += time.perf_counter() - tick
        result.pairs_seen += len(batch)
        result.losses.append(float(loss.detach()))
        if log_every and done % log_every == 0:
            log.info("step %d/%d loss %.4f (%.1f pairs/s)", done, config.max_steps, np.mean(result.losses[-log_every:]), result.pairs_seen / trained)
        if done % config.eval_every == 0 and done < config.max_steps and check(done):
            result.stopped = "early_stopping"
            break
    result.steps, result.seconds = done, trained
    if validate is not None and (not result.history or result.history[-1]["step"] != done):
        check(done)
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return result

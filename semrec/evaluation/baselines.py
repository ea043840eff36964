"""Collaborative-filtering peers: popularity, ItemKNN (co-occurrence cosine), and implicit ALS."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import require
from .protocol import TrainData


class Popularity:
    """Most distinct training users first (the same list for everyone, minus their history)."""

    name = "popularity"

    def fit(self, data: TrainData) -> "Popularity":
        self._scores = data.counts.astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self._scores, (len(users), len(self._scores)))


def cosine_neighbours(matrix: sp.csr_matrix, k: int, chunk: int = 1024) -> sp.csr_matrix:
    """items x items: for each item (row) its `k` most co-occurring items by cosine
    (|U_i & U_j| / sqrt(|U_i| |U_j|)), the item itself left out.

    Example:
        >>> X = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1]], dtype=np.float32))
        >>> S = cosine_neighbours(X, 1)
        >>> S.toarray().argmax(1).tolist(), round(float(S[2, 0]), 3)
        ([1, 0, 0], 0.707)
    """
    by_item = sp.csr_matrix(matrix.T, dtype=np.float32)
    norms = np.sqrt(np.asarray(by_item.multiply(by_item).sum(1)).ravel())
    inv = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
    n = by_item.shape[0]
    k = min(k, n - 1)
    rows, cols, vals = [], [], []
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        sims = (by_item[start:stop] @ by_item.T).toarray()
        sims *= inv[start:stop, None] * inv[None, :]
        sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        val = np.take_along_axis(sims, top, 1)
        keep = val > 0
        rows.append(np.repeat(np.arange(start, stop), k)[keep.ravel()])
        cols.append(top[keep])
        vals.append(val[keep])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


class ItemKNN:
    """Item-based kNN: a candidate's score is the sum of its cosine similarity to the user's
    items, counting only pairs where the candidate is among a history item's `k` neighbours."""

    def __init__(self, k: int = 10) -> None:
        self.k = k
        self.name = f"itemknn(k={k})"

    def fit(self, data: TrainData) -> "ItemKNN":
        self._matrix = data.matrix
        self._sims = cosine_neighbours(data.matrix, self.k)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return (self._matrix[users] @ self._sims).toarray()


class ALS:
    """Implicit-feedback matrix factorisation (`implicit`'s AlternatingLeastSquares) on the
    binary user x item matrix; confidence = 1 + alpha for observed pairs.

    Needs the `eval` extra (`pip install 'semrec[eval]'`).
    """

    def __init__(self, factors: int = 64, alpha: float = 2.0, regularization: float = 0.01, iterations: int = 15, seed: int = 0) -> None:
        self.factors, self.alpha, self.regularization, self.iterations, self.seed = factors, alpha, regularization, iterations, seed
        self.name = f"als(f={factors},a={alpha:g},reg={regularization:g})"

    def fit(self, data: TrainData) -> "ALS":
        require("implicit", "eval")
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                calculate_training_loss=False,
            )
            model.fit(data.matrix.tocsr().astype(np.float32), show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T

"""semrec: a semantic recommender on sentence-transformers and Qdrant.

Example:
    >>> from semrec import Recommender
    >>> rec = Recommender.open("my-store")
    >>> rec.index_items("catalog.csv")
    >>> rec.record("u1", "el-001", kind="view")
    >>> rec.recommend("u1", k=5)
"""

from typing import TYPE_CHECKING

#: Public name -> the module defining it. Imported on first use, so that `import semrec` and
#: light parts such as `semrec.encoders` do not load the store, pydantic and Qdrant clients
#: (worker processes and the command line start faster).
_EXPORTS = {
    "semrec.catalog": ("Catalog", "Item", "Reject", "load_catalog", "write_rejects"),
    "semrec.collaborative": ("CollaborativeConfig",),
    "semrec.datasets": ("load_movielens",),
    "semrec.demo": ("build_demo", "sample_catalog_path", "sample_events_path"),
    "semrec.encoders": ("Encoder", "ModelFingerprint", "load_encoder"),
    "semrec.errors": (
        "CatalogError",
        "ConcurrentWriteError",
        "ConfigError",
        "MissingExtraError",
        "ModelMismatchError",
        "NotIndexedError",
        "SemrecError",
        "StateFileError",
        "StoreLockedError",
        "UnknownUserError",
    ),
    "semrec.evaluation": ("markdown", "run_benchmark"),
    "semrec.profiles": ("Event", "ProfileConfig", "UserProfile"),
    "semrec.ranking": ("Recommendation", "Results"),
    "semrec.recommender": (
        "CollaborativeReport",
        "IndexReport",
        "Recommender",
        "RecommenderConfig",
        "RecordReport",
    ),
    "semrec.store": ("EdgeStore", "QdrantStore", "VectorStore", "open_store"),
    "semrec.training": ("TrainConfig", "finetune"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

if TYPE_CHECKING:  # what static tools see
    from .catalog import Catalog, Item, Reject, load_catalog, write_rejects
    from .collaborative import CollaborativeConfig
    from .datasets import load_movielens
    from .demo import build_demo, sample_catalog_path, sample_events_path
    from .encoders import Encoder, ModelFingerprint, load_encoder
    from .errors import (
        CatalogError,
        ConcurrentWriteError,
        ConfigError,
        MissingExtraError,
        ModelMismatchError,
        NotIndexedError,
        SemrecError,
        StateFileError,
        StoreLockedError,
        UnknownUserError,
    )
    from .evaluation import markdown, run_benchmark
    from .profiles import Event, ProfileConfig, UserProfile
    from .ranking import Recommendation, Results
    from .recommender import (
        CollaborativeReport,
        IndexReport,
        Recommender,
        RecommenderConfig,
        RecordReport,
    )
    from .store import EdgeStore, QdrantStore, VectorStore, open_store
    from .training import TrainConfig, finetune

__version__ = "0.1.0"

__all__ = [
    "Catalog",
    "CatalogError",
    "CollaborativeConfig",
    "CollaborativeReport",
    "ConcurrentWriteError",
    "ConfigError",
    "EdgeStore",
    "Encoder",
    "Event",
    "IndexReport",
    "Item",
    "MissingExtraError",
    "ModelFingerprint",
    "ModelMismatchError",
    "NotIndexedError",
    "ProfileConfig",
    "QdrantStore",
    "Recommendation",
    "Recommender",
    "RecommenderConfig",
    "RecordReport",
    "Reject",
    "Results",
    "SemrecError",
    "StateFileError",
    "StoreLockedError",
    "TrainConfig",
    "UnknownUserError",
    "UserProfile",
    "VectorStore",
    "build_demo",
    "finetune",
    "load_catalog",
    "load_encoder",
    "load_movielens",
    "markdown",
    "open_store",
    "run_benchmark",
    "sample_catalog_path",
    "sample_events_path",
    "write_rejects",
]


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'semrec' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

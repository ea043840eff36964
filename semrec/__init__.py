"""semrec: a semantic recommender on sentence-transformers and Qdrant.

Example:
    >>> from semrec import Recommender
    >>> rec = Recommender.open("my-store")
    >>> rec.index_items("catalog.csv")
    >>> rec.record("u1", "el-001", kind="view")
    >>> rec.recommend("u1", k=5)
"""

from .catalog import Catalog, Item, Reject, load_catalog, write_rejects
from .collaborative import CollaborativeConfig
from .encoders import Encoder, ModelFingerprint, load_encoder
from .errors import (
    CatalogError,
    ConfigError,
    MissingExtraError,
    ModelMismatchError,
    NotIndexedError,
    SemrecError,
    StoreLockedError,
    UnknownUserError,
)
from .profiles import Event, ProfileConfig, UserProfile
from .ranking import Recommendation, Results
from .recommender import CollaborativeReport, IndexReport, Recommender, RecommenderConfig, RecordReport
from .store import EdgeStore, QdrantStore, VectorStore, open_store

__version__ = "0.1.0"

__all__ = [
    "Catalog",
    "CatalogError",
    "CollaborativeConfig",
    "CollaborativeReport",
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
    "StoreLockedError",
    "UnknownUserError",
    "UserProfile",
    "VectorStore",
    "load_catalog",
    "load_encoder",
    "open_store",
    "write_rejects",
]

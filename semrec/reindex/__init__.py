"""Batch re-indexing: incremental by content hash, resumable, blue-green, and distributed on Ray.

Example:
    >>> from semrec.reindex import reindex, rollback
    >>> summary = reindex("catalog.parquet", "shop-store")            # or a Qdrant URL
    >>> summary.new, summary.changed, summary.deleted
"""

from .job import MODES, ReindexCheckError, Summary, reindex, rollback
from .plan import Plan, make_plan
from .state import State
from .upload import UploadConfig, UploadingStore, is_transient, with_retries
from .versions import EdgeTarget, ServerTarget, open_target


def ray_reindex(*args, **kwargs):
    """The distributed (Ray Data) job; see `semrec.reindex.ray_job.ray_reindex`."""
    from .ray_job import ray_reindex as run

    return run(*args, **kwargs)


__all__ = [
    "MODES",
    "EdgeTarget",
    "Plan",
    "ReindexCheckError",
    "ServerTarget",
    "State",
    "Summary",
    "UploadConfig",
    "UploadingStore",
    "is_transient",
    "make_plan",
    "open_target",
    "ray_reindex",
    "reindex",
    "rollback",
    "with_retries",
]

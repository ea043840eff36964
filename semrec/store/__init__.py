"""Vector stores: the `VectorStore` protocol, Qdrant Edge (embedded) and qdrant-client (server)."""

from __future__ import annotations

from pathlib import Path

from .base import Filter, Hit, VectorStore, parse_filter, point_id
from .edge import EdgeStore
from .qdrant import QdrantStore


def open_store(path: str | Path | None = None, *, url: str | None = None, **client_options) -> VectorStore:
    """An embedded store at `path`, or a Qdrant server at `url` (":memory:" for tests)."""
    from ..errors import ConfigError

    if (path is None) == (url is None):
        raise ConfigError(
            f"Give exactly one of path= (embedded store folder) or url= (Qdrant server); got "
            f"path={path!r}, url={url!r}."
        )
    if url is not None:
        return QdrantStore(url, **client_options)
    return EdgeStore(path)


__all__ = ["EdgeStore", "Filter", "Hit", "QdrantStore", "VectorStore", "open_store", "parse_filter", "point_id"]

"""Deployment settings, read from `SEMREC_*` environment variables at the entry points only."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """`SEMREC_STORE` (embedded store folder), `SEMREC_URL` / `SEMREC_QDRANT_API_KEY` (Qdrant server),
    `SEMREC_API_KEY` (the key clients of `semrec serve` must send; also sent to the Qdrant server
    when `SEMREC_QDRANT_API_KEY` is not set),
    `SEMREC_TIMEOUT` (seconds to wait for the server to answer), `SEMREC_MODEL`
    (sentence-transformers name or folder, or "use-multilingual"), `SEMREC_DEVICE`,
    `SEMREC_NUM_THREADS` (CPU threads for inference; default: the cores this process may use),
    `SEMREC_CACHE_DIR` (where exported models are kept; default ~/.cache/semrec).
    This class is the one place a `SEMREC_*` variable is read.

    Example:
        >>> Settings(url="http://localhost:6333").timeout
        5.0
    """

    model_config = SettingsConfigDict(env_prefix="SEMREC_", extra="ignore")

    @property
    def qdrant_key(self) -> str | None:
        """The key sent to a Qdrant server: `SEMREC_QDRANT_API_KEY`, else `SEMREC_API_KEY`."""
        return self.qdrant_api_key or self.api_key

    store: str = "semrec-store"
    url: str | None = None
    api_key: str | None = None
    qdrant_api_key: str | None = None
    timeout: float = Field(5.0, gt=0)
    model: str | None = None
    device: str | None = None
    num_threads: int | None = Field(None, ge=1)
    cache_dir: str | None = None

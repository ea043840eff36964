"""Deployment settings, read from `SEMREC_*` environment variables at the entry points only."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """`SEMREC_STORE` (embedded store folder), `SEMREC_URL` / `SEMREC_API_KEY` (Qdrant server),
    `SEMREC_TIMEOUT` (seconds to wait for the server to answer), `SEMREC_MODEL`
    (sentence-transformers name or folder), `SEMREC_DEVICE`.

    Example:
        >>> Settings(url="http://localhost:6333").timeout
        5.0
    """

    model_config = SettingsConfigDict(env_prefix="SEMREC_", extra="ignore")

    store: str = "semrec-store"
    url: str | None = None
    api_key: str | None = None
    timeout: float = Field(5.0, gt=0)
    model: str | None = None
    device: str | None = None

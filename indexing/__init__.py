"""Batch re-indexing jobs: thin, idempotent entry points over `semrec.reindex`."""

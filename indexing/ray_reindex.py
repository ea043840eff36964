"""Distributed re-index on Ray: `python -m indexing.ray_reindex SHARDS --url http://host:6333`.

The same command as `semrec reindex --ray` (same options and settings, JSON summary as the last
line of every run, errors included): reads Parquet shards with Ray Data, encodes them on an actor
pool (GPU actors when the cluster has GPUs), writes a new version to the Qdrant server and
switches the aliases. Exit codes: 0 success, 1 failure, 2 usage error, 3 partial (rows rejected).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from semrec.cli import reindex_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run `semrec reindex --ray` with `argv`; returns the exit code."""
    return reindex_main(["--ray", *(sys.argv[1:] if argv is None else argv)], prog_name="python -m indexing.ray_reindex")


if __name__ == "__main__":
    sys.exit(main())

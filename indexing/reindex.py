"""Re-index a catalog into a store: `python -m indexing.reindex CATALOG [--store DIR | --url URL]`.

The same command as `semrec reindex` (same options, `SEMREC_STORE` / `SEMREC_URL`, JSON summary
as the last line of every run, errors included). Exit codes: 0 success, 1 failure, 2 usage
error, 3 partial success (some rows rejected, written to the rejects file).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from semrec.cli import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, reindex_main

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run `semrec reindex` with `argv`; returns the exit code (a parsing error raises
    SystemExit(2), as argparse does)."""
    return reindex_main(argv)


if __name__ == "__main__":
    sys.exit(main())

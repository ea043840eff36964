"""Re-index a catalog into a store: `python -m indexing.reindex CATALOG --store PATH_OR_URL`.

Incremental by content (only new and changed items are encoded), resumable after a crash (run
the same command again), blue-green when the model changes or with --rebuild. Prints a JSON
summary as the last line. Exit codes: 0 success, 1 failure, 2 usage error, 3 partial success
(some rows rejected, written to the rejects file).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def run(
    catalog: str | Path | None,
    store: str,
    *,
    mode: str = "full",
    quiet: bool = False,
    rejects: str | Path | None = None,
    batch_size: int = 256,
    model: str | None = None,
    prefix: str = "semrec",
    state_dir: str | Path | None = None,
    streams: int = 4,
    retries: int = 5,
    timeout: float = 60.0,
    do_rollback: bool = False,
) -> int:
    """Run one re-index (or a rollback) and print its JSON summary last; returns the exit code."""
    from rich.console import Console

    from semrec.errors import SemrecError
    from semrec.reindex import UploadConfig, reindex, rollback
    from semrec.settings import Settings

    err = Console(stderr=True)
    settings = Settings()
    # the model loader's own tqdm bar would end without a newline, in front of the summary
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        if do_rollback:
            version = rollback(store, prefix=prefix, state_dir=state_dir)
            print(json.dumps({"rollback": True, "store": str(store), "version": version}))
            return EXIT_OK
        if catalog is None:
            err.print("[red]error:[/red] CATALOG is required (or pass --rollback).")
            return EXIT_USAGE
        if not Path(catalog).exists():
            err.print(f"[red]error:[/red] catalog {str(catalog)!r} does not exist; pass a CSV, Parquet, JSONL file or a folder of Parquet shards.")
            return EXIT_USAGE
        rejects = rejects or Path(catalog).with_name(f"{Path(catalog).stem}.rejects.jsonl")
        upload = UploadConfig(streams=streams, retries=retries, timeout_s=timeout)
        with _progress(err, quiet) as progress:
            summary = reindex(
                catalog,
                store,
                mode=mode,  # type: ignore[arg-type]
                model=model or settings.model,
                batch_size=batch_size,
                rejects_path=rejects,
                upload=upload,
                prefix=prefix,
                api_key=settings.api_key,
                state_dir=state_dir,
                progress=progress,
            )
    except SemrecError as exc:
        err.print(f"[red]error:[/red] {exc}")
        print(json.dumps({"error": str(exc), "store": str(store)}, ensure_ascii=False))
        return EXIT_FAILED
    if summary.rejected and not quiet:
        err.print(f"{summary.rejected} row(s) rejected; written to {summary.rejects_path}")
    print(summary.to_json())
    return summary.exit_code


class _progress:
    """A Rich progress bar per phase on stderr (nothing with --quiet)."""

    def __init__(self, console, quiet: bool) -> None:
        self.console, self.quiet = console, quiet
        self.bar = None
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        if self.quiet:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=self.console
        )
        self.bar.start()
        return self.update

    def update(self, phase: str, done: int, total: int) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.bar.add_task(phase, total=total)
        self.bar.update(self.tasks[phase], completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m indexing.reindex", description=__doc__.split("\n\n")[0])
    p.add_argument("catalog", nargs="?", help="CSV, Parquet, JSONL, or a folder of Parquet shards")
    p.add_argument("--store", required=True, help="embedded store folder, or Qdrant URL (http://host:6333)")
    modes = p.add_mutually_exclusive_group()
    modes.add_argument("--full", dest="mode", action="store_const", const="full", help="delete items that left the catalog (default)")
    modes.add_argument("--append", dest="mode", action="store_const", const="append", help="keep items that left the catalog")
    modes.add_argument("--rebuild", dest="mode", action="store_const", const="rebuild", help="build a new version and switch (blue-green)")
    modes.add_argument("--rollback", action="store_true", help="make the previous version live again")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--rejects", help="rejects file (JSONL); default CATALOG.rejects.jsonl")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--model", help="sentence-transformers name or folder ($SEMREC_MODEL; default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--prefix", default="semrec", help="collection prefix on a server")
    p.add_argument("--state-dir", help="where a server store's state files live")
    p.add_argument("--streams", type=int, default=4, help="parallel upload streams (server)")
    p.add_argument("--retries", type=int, default=5, help="retries for transient errors")
    p.add_argument("--timeout", type=float, default=60.0, help="request timeout, seconds (server)")
    p.set_defaults(mode="full")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)  # exits 2 on a usage error
    if args.batch_size < 1 or args.streams < 1 or args.retries < 0 or args.timeout <= 0:
        parser().error("--batch-size and --streams must be >= 1, --retries >= 0, --timeout > 0")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(
        args.catalog,
        args.store,
        mode=args.mode,
        quiet=args.quiet,
        rejects=args.rejects,
        batch_size=args.batch_size,
        model=args.model,
        prefix=args.prefix,
        state_dir=args.state_dir,
        streams=args.streams,
        retries=args.retries,
        timeout=args.timeout,
        do_rollback=args.rollback,
    )


if __name__ == "__main__":
    sys.exit(main())

"""The `semrec` command line (Typer + Rich)."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import SemrecError
from .settings import Settings

app = typer.Typer(help="semrec: semantic recommendations on Qdrant.", no_args_is_help=True, add_completion=False)
console = Console()

StoreOpt = typer.Option(None, "--store", help="Embedded store folder (default: $SEMREC_STORE or ./semrec-store).")
UrlOpt = typer.Option(None, "--url", help="Qdrant server URL instead of an embedded store ($SEMREC_URL).")
KOpt = typer.Option(10, "--k", "-k", help="How many results.")
FilterOpt = typer.Option(None, "--filter", help='JSON filter, e.g. \'{"category": "Kitchen", "price": {"lt": 50}}\'.')


def _open(store: Optional[str], url: Optional[str], **options):
    from .recommender import Recommender

    settings = Settings()
    url = url or settings.url
    if url:
        return Recommender.open(url=url, api_key=settings.api_key, model=settings.model, **options)
    return Recommender.open(store or settings.store, model=settings.model, **options)


def _filter(text: Optional[str]):
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--filter {text!r} is not JSON ({exc}); e.g. '{{\"category\": \"Kitchen\"}}'.")


def show(results, title: str) -> None:
    """Print results as a Rich table."""
    table = Table(title=title, title_justify="left")
    for column in ("#", "item", "score", "name", "category", "why"):
        table.add_column(column, overflow="fold")
    for rank, r in enumerate(results, 1):
        table.add_row(str(rank), r.item_id, f"{r.score:.3f}", r.name, r.category or "", r.reason)
    console.print(table)


def _run(action):
    """Run a command body; semrec errors become a one-line message and exit code 1."""
    try:
        return action()
    except SemrecError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress (INFO).")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def demo(
    store: str = typer.Option("semrec-demo-store", "--store", help="Folder for the demo's embedded store."),
    fresh: bool = typer.Option(True, "--fresh/--reuse", help="Start from an empty store."),
    user: str = typer.Option("u001", "--user", help="Sample user to recommend for."),
) -> None:
    """Index the shipped sample catalog into an embedded store and recommend in real time."""
    from .demo import build_demo, sample_catalog_path

    def body():
        if fresh:
            shutil.rmtree(store, ignore_errors=True)
        with console.status("Loading the model and indexing the sample catalog..."):
            rec = build_demo(store)
        with rec:
            console.print(f"Indexed {rec.n_items} items from {sample_catalog_path().name} into {store!r}.")
            profile = rec.profile(user)
            if profile:
                console.print(f"[bold]{user}[/bold]: {profile.summary(rec.config.profile)}")
            show(rec.recommend(user, k=8), f"Recommendations for {user}")
            for item_id in ("ki-001", "ki-014", "ki-032", "ki-012"):
                rec.record(user, item_id, kind="view")
            console.print(f"{user} now views 4 kitchen items; the next call reflects it:")
            show(rec.recommend(user, k=8), f"Recommendations for {user} after kitchen views")
            show(rec.search("gifts for a tea lover", k=5), "Search: 'gifts for a tea lover'")

    _run(body)


@app.command()
def index(
    catalog: Path = typer.Argument(..., help="Catalog file: CSV, Parquet or JSONL."),
    store: Optional[str] = StoreOpt,
    url: Optional[str] = UrlOpt,
    rejects: Optional[Path] = typer.Option(None, "--rejects", help="Where to write rejected rows (JSONL)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Validate, encode and store a catalog. Exit code 3 when some rows were rejected."""

    def body():
        with _open(store, url) as rec:
            path = rejects or Path(f"{catalog.stem}.rejects.jsonl")
            report = rec.index_items(catalog, rejects_path=path, show_progress=not quiet)
            console.print(f"indexed {report.indexed}, rejected {len(report.rejected)}")
            if report.rejected:
                console.print(f"rejected rows written to {report.rejects_path}")
                raise typer.Exit(3)

    _run(body)


@app.command()
def record(
    events: Path = typer.Argument(..., help="Events file with user_id, item_id, [kind], [ts], [weight]."),
    store: Optional[str] = StoreOpt,
    url: Optional[str] = UrlOpt,
) -> None:
    """Record a file of user events."""

    def body():
        with _open(store, url) as rec:
            report = rec.record_many(events)
            console.print(f"recorded {report.events} events for {report.users} users")

    _run(body)


@app.command()
def fit(
    store: Optional[str] = StoreOpt,
    url: Optional[str] = UrlOpt,
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """(Re)fit the collaborative vectors from every user's events so far (run it after loading
    events, then periodically)."""

    def body():
        with _open(store, url) as rec:
            r = rec.fit_collaborative(seed=seed)
            console.print(
                f"fitted collaborative vectors of {r.items} items from {r.users} users and "
                f"{r.interactions} interactions ({r.warm_items} items with enough interactions) in {r.seconds:.1f}s"
            )

    _run(body)


@app.command()
def recommend(
    user: str = typer.Argument(..., help="User id."),
    k: int = KOpt,
    filter: Optional[str] = FilterOpt,
    include_seen: bool = typer.Option(False, "--include-seen", help="Also rank items the user has seen."),
    store: Optional[str] = StoreOpt,
    url: Optional[str] = UrlOpt,
) -> None:
    """Recommendations for a user."""

    def body():
        with _open(store, url) as rec:
            show(rec.recommend(user, k=k, filter=_filter(filter), exclude_seen=not include_seen), f"Recommendations for {user}")

    _run(body)


@app.command()
def search(
    text: str = typer.Argument(..., help="Free text."),
    k: int = KOpt,
    filter: Optional[str] = FilterOpt,
    store: Optional[str] = StoreOpt,
    url: Optional[str] = UrlOpt,
) -> None:
    """Items closest to a text."""
    _run(lambda: _with(store, url, lambda rec: show(rec.search(text, k=k, filter=_filter(filter)), f"Search: {text!r}")))


@app.command()
def similar(
    item: str = typer.Argument(..., help="Item id."),
    k: int = KOpt,
    filter: Optional[str] = FilterOpt,
    store: Optional[str] = StoreOpt,
    url: Optional[str] = UrlOpt,
) -> None:
    """Items closest to an item."""
    _run(lambda: _with(store, url, lambda rec: show(rec.similar(item, k=k, filter=_filter(filter)), f"Similar to {item}")))


@app.command()
def evaluate(
    data: Optional[Path] = typer.Argument(None, help="MovieLens folder (movies.csv, ratings.csv, tags.csv)."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="Catalog file of any data set (instead of a MovieLens folder)."),
    events: Optional[Path] = typer.Option(None, "--events", help="Events file: user_id, item_id, ts, [kind], [weight]."),
    tags: Optional[Path] = typer.Option(None, "--tags", help="Optional dated tags: user_id, item_id, tag, ts."),
    protocol: str = typer.Option("leave-last-out", "--protocol", help="leave-last-out or temporal."),
    k: int = KOpt,
    include_seen: bool = typer.Option(False, "--include-seen", help="Also rank items already in the user's history."),
    tune: bool = typer.Option(True, "--tune/--no-tune", help="Validation grids (ItemKNN k, ALS, semrec levers) and the levers table."),
    online: bool = typer.Option(True, "--online/--no-online", help="Also serve the default through a Recommender on an embedded store and score that."),
    backend: str = typer.Option("torch", "--backend", help="Encoder backend: torch (fp32 reference) or auto."),
    out: Path = typer.Option(Path("benchmarks/out"), "--out", help="Folder for the report (JSON + Markdown) and the vector cache."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Evaluate semrec against popularity, ItemKNN and ALS on one split; prints the Markdown table."""

    def body():
        from .evaluation import markdown, run_benchmark

        report = run_benchmark(
            data, catalog=catalog, events=events, tags=tags, protocol=protocol, k=k,
            exclude_seen=not include_seen, tune=tune, online=online, model=Settings().model, backend=backend,
            out_dir=out, cache_dir=out / "cache", seed=seed,
        )
        console.print(markdown(report))

    _run(body)


@app.command()
def reindex(
    catalog: Optional[Path] = typer.Argument(None, help="Catalog: CSV, Parquet, JSONL, or a folder of Parquet shards."),
    store: str = typer.Option(..., "--store", help="Embedded store folder, or a Qdrant server URL (http://host:6333)."),
    full: bool = typer.Option(False, "--full", help="Delete items that left the catalog (the default)."),
    append: bool = typer.Option(False, "--append", help="Keep items that left the catalog."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build a new version beside the live one, check it, switch (blue-green)."),
    rollback: bool = typer.Option(False, "--rollback", help="Make the previous version live again."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name or folder (e.g. a `semrec finetune` output; default $SEMREC_MODEL or the packaged MiniLM). A new model builds a new version (blue-green)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    rejects: Optional[Path] = typer.Option(None, "--rejects", help="Rejects file (JSONL); default CATALOG.rejects.jsonl."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Items per checkpointed batch."),
    prefix: str = typer.Option("semrec", "--prefix", help="Collection prefix on a server."),
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", help="Where a server store's state files live."),
    streams: int = typer.Option(4, "--streams", min=1, help="Parallel upload streams (server)."),
    retries: int = typer.Option(5, "--retries", min=0, help="Retries for transient errors."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.001, help="Request timeout in seconds (server)."),
) -> None:
    """Re-index a catalog: incremental by content, resumable, blue-green on a model change.
    Prints a JSON summary last. Exit 0 ok, 1 failed, 2 usage error, 3 some rows rejected."""
    from indexing.reindex import run

    if full + append + rebuild + rollback > 1:
        raise typer.BadParameter("use at most one of --full, --append, --rebuild, --rollback")
    mode = "append" if append else "rebuild" if rebuild else "full"
    raise typer.Exit(
        run(catalog, store, mode=mode, quiet=quiet, rejects=rejects, batch_size=batch_size, model=model, prefix=prefix,
            state_dir=state_dir, streams=streams, retries=retries, timeout=timeout, do_rollback=rollback)
    )


@app.command()
def finetune(
    catalog: Path = typer.Option(..., "--catalog", help="Catalog file: CSV, Parquet or JSONL."),
    events: Path = typer.Option(..., "--events", help="Events file: user_id, item_id, ts, [kind], [weight]."),
    out: Path = typer.Option(..., "--out", help="Folder for the fine-tuned model (sentence-transformers, safetensors)."),
    max_steps: int = typer.Option(1500, "--max-steps", min=1, help="Optimiser steps at most (CPU adapter: ~1-3 min)."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", min=1, help="Seconds of training at most (non-deterministic)."),
    method: str = typer.Option("auto", "--method", help="auto (GPU: full, CPU: adapter), full or adapter."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="Model to start from ($SEMREC_MODEL; default all-MiniLM-L6-v2)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Fine-tune the encoder on interactions; prints before/after metrics. Re-index to serve with it."""

    def body():
        from .training import TrainConfig, finetune as run

        report = run(catalog, events, out, base_model=base_model or Settings().model, method=method,
                     config=TrainConfig(max_steps=max_steps, time_budget=time_budget, seed=seed))
        console.print_json(json.dumps(report.metrics))
        console.print(f"model written to {report.out}; serve it with: semrec reindex CATALOG --store DIR --model {report.out}")

    _run(body)


def _with(store, url, action):
    with _open(store, url) as rec:
        action(rec)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

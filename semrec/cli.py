"""The `semrec` command line (Typer), made to be scripted.

The contract every command keeps:

* Results go to stdout and nothing else does: `--format table|json|jsonl|csv` (default: a table
  on a terminal, JSON when stdout is piped or redirected). `reindex` always prints JSON.
* Errors go to stderr as one line, ``error: ...``, naming the value and the fix; the traceback
  only with `--verbose`.
* Paths, URLs, filters and options are checked before the model loads or a store opens; a
  command that only reads (or needs indexed items) never creates a store; a Qdrant server that
  does not answer fails within `--timeout` / `$SEMREC_TIMEOUT` seconds, naming the URL.
* Exit codes, shared by every command: `EXIT_CODES`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Optional

import typer
from typer._click.exceptions import (  # Typer's own click
    ClickException,
    NoArgsIsHelpError,
    UsageError,
)
from typer.core import TyperGroup

from . import __version__
from .errors import ConfigError, SemrecError
from .settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
#: The exit codes of every command (README "CLI" shows the same table).
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "failed: the command ran and could not finish (unknown item, locked store, "
    "server that does not answer, unreadable catalog)",
    EXIT_USAGE: "usage error: a bad option, a missing file, a bad filter or URL, a setting semrec "
    "cannot use",
    EXIT_PARTIAL: "partial success: some rows were rejected (written to `CATALOG.rejects.jsonl` or "
    "`--rejects`)",
}
#: Environment that keeps model loading quiet (no weight-loading bar, no advisory warnings).
_QUIET_LOADING_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}
#: Items read to learn what type each filtered field holds.
#: Modules whose exceptions mean the Qdrant server failed (wrapped into one line naming the URL).
_CLIENT_MODULES = ("qdrant_client", "httpx", "httpcore", "grpc", "h2")
#: What library messages say in Python, and what the command line says instead.
_CLI_WORDING = [
    (r"Index them first with index_items\(\)", "Index them first with `semrec index CATALOG`"),
    (r"index it first with index_items\(\)", "index it first with `semrec index CATALOG`"),
    (r"call index_items\(\) with a catalog first", "index a catalog first with `semrec index CATALOG`"),
    (r"pass on_unknown_item='skip'", "pass --on-unknown-item skip"),
    (r"Open the store with model='([^']*)'", r"Set SEMREC_MODEL=\1"),
    (r"\(Recommender\.open\(url=\.\.\.\)\)", "(--url / SEMREC_URL)"),
    (r"close the other Recommender", "close the other process"),
    (r"pass overwrite=True", "pass --overwrite"),
]


class CliError(SemrecError):
    """A problem the command line reports itself, with its exit code (usage error unless told)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


# the values an option takes (Typer turns a Literal into a choice)
Format = Literal["table", "json", "jsonl", "csv"]
ReportFormat = Literal["markdown", "json"]
OnUnknownItem = Literal["raise", "skip"]
Protocol = Literal["leave-last-out", "temporal"]
Method = Literal["auto", "full", "adapter"]


@dataclass
class _State:
    """What one invocation learnt while parsing, read by the error handler."""

    verbose: bool = False
    json_errors: bool = False  # reindex: every exit ends with a JSON line on stdout
    usage_error: bool = False
    target: str | None = None  # the store or server in use, named in JSON errors
    url: str | None = None  # the server in use, named when its client fails


_state = _State()


# invocation: one place turns every outcome into an exit code -------------------------------------
def _set_verbose(value: bool) -> bool:
    if value:
        _state.verbose = True
        logging.getLogger().setLevel(logging.INFO)
    return value


_VERBOSE_HELP = "Log progress (INFO), show model-loading progress, and print tracebacks with errors."


def _verbose_option() -> Any:
    """A --verbose option that any command takes (built by Typer, so it fits Typer's commands)."""
    holder = typer.Typer()

    @holder.command()
    def _holder(
        verbose: bool = typer.Option(False, "--verbose", "-v", is_eager=True, expose_value=False, callback=_set_verbose, help=_VERBOSE_HELP),
    ) -> None: ...

    return typer.main.get_command(holder).params[0]


def _with_common_options(command: Any) -> Any:
    """Every command takes --verbose after its name too (`semrec recommend u1 -v`)."""
    if command is not None and not any(p.name == "verbose" for p in command.params):
        command.params.append(_verbose_option())
    return command


class _Group(TyperGroup):
    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return _with_common_options(super().get_command(ctx, cmd_name))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        code = _invoke(lambda: super(_Group, self).main(args, prog_name, complete_var, standalone_mode=False, **extra))
        if standalone_mode:
            sys.exit(code)
        return code


def _invoke(run: Callable[[], Any]) -> int:
    """Run a command; every outcome becomes an exit code, every error one line on stderr."""
    global _state
    _state = _State()
    root = logging.getLogger()
    level = root.level
    if not root.handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    root.setLevel(logging.WARNING)
    try:
        result = run()
        return result if isinstance(result, int) else EXIT_OK
    except NoArgsIsHelpError as exc:
        exc.show()
        return EXIT_USAGE
    except UsageError as exc:
        _state.usage_error = True
        if exc.ctx is not None and exc.ctx.command.name == "reindex":
            _state.json_errors = True
        return _fail(_usage_message(exc), EXIT_USAGE, exc)
    except ClickException as exc:
        return _fail(exc.format_message(), exc.exit_code, exc)
    except (typer.Abort, KeyboardInterrupt) as exc:
        return _fail("interrupted", 130, exc)
    except CliError as exc:
        return _fail(str(exc), exc.code, exc)
    except SemrecError as exc:
        return _fail(_cli_wording(str(exc)), EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED, exc)
    except Exception as exc:  # noqa: BLE001 - the command line's last word: one line, not a traceback
        if _state.url and type(exc).__module__.split(".")[0] in _CLIENT_MODULES:
            return _fail(f"Qdrant server {_state.url} failed: {type(exc).__name__}: {exc}", EXIT_FAILED, exc)
        hint = "" if _state.verbose else " (run with --verbose for the traceback)"
        return _fail(f"unexpected {type(exc).__name__}: {exc}{hint}", EXIT_FAILED, exc)
    finally:
        root.setLevel(level)


def _fail(message: str, code: int, exc: BaseException | None = None) -> int:
    line = " ".join(str(message).split())
    if _state.verbose and exc is not None and not isinstance(exc, UsageError):
        traceback.print_exception(exc, file=sys.stderr)
    sys.stdout.flush()
    print(f"error: {line}", file=sys.stderr, flush=True)
    if _state.json_errors:
        summary = {"error": line, "exit_code": code, **({"store": _state.target} if _state.target else {})}
        print(json.dumps(summary, ensure_ascii=False), flush=True)
    return code


def _usage_message(exc: UsageError) -> str:
    message = exc.format_message()
    if exc.ctx is not None:
        message += f" (see: {exc.ctx.command_path} --help)"
    return message


def _cli_wording(message: str) -> str:
    for pattern, replacement in _CLI_WORDING:
        message = re.sub(pattern, replacement, message)
    return message


# the app -------------------------------------------------------------------------------------------
app = typer.Typer(
    cls=_Group,
    help="semrec: semantic recommendations on Qdrant. Exit codes: 0 ok, 1 failed, 2 usage error, "
    "3 partial (rows rejected).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # help shows every word, e.g. [kind]
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"semrec {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help=_VERBOSE_HELP),
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """semrec: semantic recommendations on Qdrant."""
    _set_verbose(verbose)


StoreOpt = typer.Option(None, "--store", help="Embedded store folder (default: $SEMREC_STORE, else ./semrec-store).")
UrlOpt = typer.Option(None, "--url", help="Qdrant server URL, e.g. http://localhost:6333 (default: $SEMREC_URL).")
TimeoutOpt = typer.Option(None, "--timeout", min=0.001, help="Seconds to wait for the Qdrant server to answer (default: $SEMREC_TIMEOUT, else 5).")
KOpt = typer.Option(10, "--k", "-k", min=1, max=1000, help="How many results (1 to 1000).")
FilterOpt = typer.Option(None, "--filter", help='JSON filter, e.g. \'{"category": "Kitchen", "price": {"lt": 50}}\'.')
FormatOpt = typer.Option(None, "--format", case_sensitive=False, help="Output format (default: table on a terminal, json when piped or redirected).")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing output file.")
NegativeOpt = typer.Option(None, "--negative", help="An item id to push away (with its near neighbours); repeat for more.")
RulesOpt = typer.Option(None, "--rules", help='JSON ranking rules, e.g. \'{"boost": {"in_stock": 0.1}, "pin": ["el-001"], "hide": ["el-002"]}\'.')


# checks made before the model loads ---------------------------------------------------------------
def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError: a SEMREC_* variable of the wrong type
        errors = getattr(exc, "errors", list)()
        name = f"SEMREC_{str(errors[0]['loc'][0]).upper()}" if errors else "a SEMREC_* variable"
        detail = errors[0]["msg"] if errors else str(exc)
        raise CliError(f"Environment variable {name} is not valid ({detail}); fix or unset it.") from exc


def _format(fmt: Format | None) -> str:
    if fmt is not None:
        return fmt
    return "table" if sys.stdout.isatty() else "json"


def _input_file(path: Path, what: str, *, folder_ok: bool = False) -> Path:
    if not path.exists():
        raise CliError(f"{what} {str(path)!r} does not exist; check the path.")
    if path.is_dir() and not folder_ok:
        raise CliError(f"{what} {str(path)!r} is a folder; expected a file.")
    return path


def _new_file(path: Path, option: str, overwrite: bool, *, ours: Callable[[Path], bool] | None = None) -> Path:
    """An output file to write: refused when it exists (unless `overwrite`, or `ours` says an
    earlier run of the same command wrote it), or when its folder is missing."""
    if path.is_dir():
        raise CliError(f"{option} {str(path)!r} is a folder; expected a file path.")
    if not path.parent.is_dir():
        raise CliError(f"{option} {str(path)!r}: folder {str(path.parent)!r} does not exist; create it first.")
    if path.exists() and not overwrite and not (ours is not None and ours(path)):
        raise CliError(
            f"{option} {str(path)!r} already exists; nothing was written. Pass --overwrite to "
            "replace it, or choose another path."
        )
    return path


def _is_rejects_file(path: Path) -> bool:
    """An empty file, or one whose first line is a rejects record (an earlier run's output)."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
        if not first.strip():
            return path.stat().st_size == 0
        record = json.loads(first)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and {"row", "reason"} <= set(record)


def _rejects_file(rejects: Path | None, catalog: Path, overwrite: bool) -> Path:
    path = rejects or catalog.with_name(f"{catalog.stem}.rejects.jsonl")
    return _new_file(path, "--rejects", overwrite, ours=_is_rejects_file)


def _parse_filter(text: str | None) -> dict[str, Any] | None:
    """The --filter JSON, checked (syntax and value types) before anything opens."""
    if text is None:
        return None
    example = 'e.g. --filter \'{"category": "Kitchen", "price": {"lt": 50}}\''
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--filter {text!r} is not JSON ({exc.msg} at column {exc.colno}); {example}.") from None
    if not spec:
        return None
    from .store import parse_filter

    try:
        parse_filter(spec)
    except (ConfigError, ValueError, TypeError) as exc:
        raise CliError(f"--filter {text!r}: {exc}") from None
    return spec


def _parse_rules(text: str | None) -> dict[str, Any] | None:
    """The --rules JSON (a RankingRules object), checked before anything opens."""
    if text is None:
        return None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--rules {text!r} is not JSON ({exc.msg} at column {exc.colno}); e.g. --rules '{{\"boost\": {{\"in_stock\": 0.1}}}}'.") from None
    from .ranking import RankingRules

    try:
        RankingRules.model_validate(spec)
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
        raise CliError(f"--rules: {'.'.join(map(str, first['loc'])) or 'value'}: {first['msg']}.") from None
    return spec


@dataclass
class _Target:
    """Where a command reads and writes: an embedded store folder or a Qdrant server."""

    path: Path | None = None
    url: str | None = None
    api_key: str | None = None
    timeout: float = Settings.model_fields["timeout"].default

    def __str__(self) -> str:
        return self.url or str(self.path)


def _target(store: str | None, url: str | None, timeout: float | None, *, existing: bool) -> _Target:
    """The store or server from the options, else $SEMREC_URL / $SEMREC_STORE; checked, nothing
    created. `existing`: the command needs an existing embedded store (it reads, or needs items)."""
    settings = _settings()
    if store is not None and url is not None:
        raise CliError(
            f"Give --store (an embedded store folder) or --url (a Qdrant server), not both; got "
            f"--store {store!r} and --url {url!r}."
        )
    timeout = settings.timeout if timeout is None else timeout
    if url is None and store is None and settings.url:
        url, source = settings.url, "SEMREC_URL"
    else:
        source = "--url"
    if url is not None:
        url = _check_url(url, source)
        target = _Target(url=url, api_key=settings.qdrant_key, timeout=timeout)
    else:
        source = "--store" if store is not None else "SEMREC_STORE" if "store" in settings.model_fields_set else "the default store"
        path = Path(store if store is not None else settings.store).expanduser()
        _check_store_path(path, source, existing)
        target = _Target(path=path, timeout=timeout)
    _state.target = str(target)
    return target


def _check_url(url: str, source: str) -> str:
    from urllib.parse import urlsplit

    if "://" not in url:
        raise CliError(f"{source} {url!r} has no scheme; write it as http://{url} (or https://{url}).")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise CliError(f"{source} {url!r} is not a valid URL ({exc}); expected e.g. http://localhost:6333.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"{source} {url!r} is not an http(s) URL; expected e.g. http://localhost:6333.")
    return url.rstrip("/")


def _check_store_path(path: Path, source: str, existing: bool) -> None:
    text = str(path)
    if not path.exists() and re.fullmatch(r"[\w.-]+:\d+(/.*)?", text):
        raise CliError(f"{source} {text!r} looks like a server address, not a folder; for a Qdrant server pass --url http://{text}.")
    if path.exists() and not path.is_dir():
        raise CliError(f"{source} {text!r} is a file; expected a store folder.")
    if existing and not _is_store(path):
        why = "no such folder" if not path.exists() else "the folder holds no semrec store"
        raise CliError(
            f"{source} {text!r} is not a semrec store ({why}); nothing was created. Index a catalog "
            f"into it first (semrec index CATALOG --store {text}), or point --store / SEMREC_STORE "
            "at an existing store."
        )


def _is_store(path: Path) -> bool:
    from .store.edge import is_store

    return is_store(path)


def _probe(url: str, timeout: float, api_key: str | None) -> None:
    """Fail within `timeout` seconds, naming the URL, when nothing answers HTTP there."""
    import ssl
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{url}/", headers={"api-key": api_key} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return  # it answered (a 401 without the API key is the client's to explain)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLError):
            return  # it answered TLS; certificate problems are the client's to explain
        timed_out = isinstance(reason, TimeoutError) or "timed out" in str(reason)
        waited = f"within {timeout:g} s " if timed_out else ""
        raise CliError(
            f"Qdrant server {url} did not answer {waited}({reason}). Check that it runs and that the "
            "URL is right" + (", or wait longer with --timeout / SEMREC_TIMEOUT." if timed_out else "."),
            EXIT_FAILED,
        ) from None


# opening: the only place the model loads ----------------------------------------------------------
@contextlib.contextmanager
def _model_loading() -> Iterator[None]:
    """Keep model loading silent (no weight-loading bar, no advisory warnings) unless --verbose."""
    if _state.verbose:
        yield
        return
    saved = {key: os.environ.get(key) for key in _QUIET_LOADING_ENV}
    os.environ.update(_QUIET_LOADING_ENV)
    loaded = sys.modules.get("transformers.utils.logging")  # already imported: it read the env then
    restore = None
    if loaded is not None:
        restore = (loaded.get_verbosity(), loaded.is_progress_bar_enabled())
        loaded.set_verbosity_error()
        loaded.disable_progress_bar()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if restore is not None:
            loaded.set_verbosity(restore[0])
            if restore[1]:
                loaded.enable_progress_bar()


@lru_cache(maxsize=2)
def _load_encoder(model: str | None, device: str | None):
    """The encoder (loaded once per process: a test runs many commands in one)."""
    from .encoders import load_encoder

    return load_encoder(model, device=device)


def _encoder():
    settings = _settings()
    with _model_loading():
        return _load_encoder(settings.model, settings.device)


@contextlib.contextmanager
def _open(target: _Target) -> Iterator[Any]:
    """A Recommender on the target: server checked, then store opened (lock), then the model."""
    if target.url:
        _state.url = target.url
        _probe(target.url, target.timeout, target.api_key)
    from .recommender import Recommender
    from .store import open_store

    if target.url:
        store = open_store(url=target.url, api_key=target.api_key, timeout=max(1.0, target.timeout))
    else:
        store = open_store(target.path)
    try:
        rec = Recommender(store, _encoder())
    except BaseException:
        store.close()
        raise
    with rec:
        yield rec


def _check_filter_fields(rec: Any, spec: dict[str, Any] | None) -> None:
    """Filter fields this store has, with values of the type each holds (the library's check,
    made before any work so that the error names --filter)."""
    try:
        rec.check_filter(spec)
    except ConfigError as exc:
        raise CliError(f"--filter: {exc}") from None


# output -------------------------------------------------------------------------------------------
_RESULT_COLUMNS = ("rank", "item_id", "score", "name", "category", "tags", "reason")
_TABLE_COLUMNS = ("rank", "item_id", "score", "name", "category", "reason")


def _result_rows(results: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {"rank": rank, "item_id": r.item_id, "score": round(float(r.score), 6), "name": r.name,
         "category": r.category, "tags": list(r.tags), "reason": r.reason}
        for rank, r in enumerate(results, 1)
    ]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "|".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # a table forced into a pipe is never wrapped at 80 columns
    return Console(file=stream, highlight=False, width=None if stream.isatty() else 10_000)


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str], title: str) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), title_justify="left")
    for column in columns:
        table.add_column("#" if column == "rank" else column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(_cell(row.get(c))) for c in columns))
    _console().print(table)


def _emit_rows(rows: list[dict[str, Any]], fmt: str, *, title: str = "", columns: Sequence[str] = _RESULT_COLUMNS,
               table_columns: Sequence[str] = _TABLE_COLUMNS) -> None:
    if fmt == "json":
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    elif fmt == "jsonl":
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(row.get(c)) if not isinstance(row.get(c), float) else row.get(c) for c in columns] for row in rows])
    else:
        _print_table(rows, table_columns, title)


def _emit_summary(summary: dict[str, Any], fmt: str, human: str) -> None:
    if fmt == "table":
        typer.echo(human)
    else:
        _emit_rows([summary] if fmt != "json" else summary, fmt, columns=list(summary))  # type: ignore[arg-type]


def _note(message: str) -> None:
    """A human note on stderr (never mixed into the results)."""
    print(message, file=sys.stderr)


# commands -----------------------------------------------------------------------------------------
@app.command()
def demo(
    store: str = typer.Option("semrec-demo-store", "--store", help="Folder for the demo's embedded store (only a folder the demo made is ever emptied)."),
    fresh: bool = typer.Option(True, "--fresh/--reuse", help="Empty the demo's own store first, or reuse it."),
    user: str = typer.Option("u001", "--user", help="Sample user to recommend for."),
    format: Optional[Format] = FormatOpt,
) -> None:
    """Index the shipped sample catalog into an embedded store and recommend in real time."""
    from .demo import build_demo, prepare_demo_store, sample_catalog_path

    fmt = _format(format)
    folder = prepare_demo_store(store, fresh=fresh)
    _state.target = str(folder)
    encoder = _encoder()
    status = _console(stderr=True).status("Indexing the sample catalog...") if sys.stderr.isatty() else contextlib.nullcontext()
    with status:
        rec = build_demo(folder, encoder=encoder)
    views = ["ki-001", "ki-014", "ki-032", "ki-012"]
    search_text = "gifts for a tea lover"
    with rec:
        profile = rec.profile(user)
        before = _result_rows(rec.recommend(user, k=8))
        for item_id in views:
            rec.record(user, item_id, kind="view")
        after = _result_rows(rec.recommend(user, k=8))
        found = _result_rows(rec.search(search_text, k=5))
        summary = {
            "store": str(folder), "catalog": sample_catalog_path().name, "indexed": rec.n_items, "user": user,
            "profile": profile.summary(rec.config.profile) if profile else None, "views": views,
        }
    lists = {"before": before, "after": after, "search": found}
    if fmt == "json":
        typer.echo(json.dumps({**summary, **lists}, ensure_ascii=False, indent=2))
    elif fmt in ("jsonl", "csv"):
        _emit_rows([{"list": name, **row} for name, rows in lists.items() for row in rows], fmt, columns=("list", *_RESULT_COLUMNS))
    else:
        typer.echo(f"Indexed {summary['indexed']} items from {summary['catalog']} into {str(folder)!r}.")
        if summary["profile"]:
            typer.echo(f"{user}: {summary['profile']}")
        _print_table(before, _TABLE_COLUMNS, f"Recommendations for {user}")
        typer.echo(f"{user} now views {len(views)} kitchen items; the next call reflects it:")
        _print_table(after, _TABLE_COLUMNS, f"Recommendations for {user} after kitchen views")
        _print_table(found, _TABLE_COLUMNS, f"Search: {search_text!r}")


@app.command()
def index(
    catalog: Path = typer.Argument(..., help="Catalog file: CSV, Parquet or JSONL."),
    store: Optional[str] = StoreOpt,
    url: Optional[str] = UrlOpt,
    timeout: Optional[float] = TimeoutOpt,
    rejects: Optional[Path] = typer.Option(None, "--rejects", help="Where to write rejected rows, JSONL (default: CATALOG.rejects.jsonl beside the catalog). An existing file other than an earlier rejects file is refused unless --overwrite."),
    overwrite: bool = OverwriteOpt,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    format: Optional[Format] = FormatOpt,
) -> None:
    """Validate, encode and store a catalog (creates the store). Exit code 3 when some rows were rejected."""
    fmt = _format(format)
    _input_file(catalog, "CATALOG", folder_ok=True)
    rejects_path = _rejects_file(rejects, catalog, overwrite)
    target = _target(store, url, timeout, existing=False)
    with _open(target) as rec:
        report = rec.index_items(catalog, rejects_path=rejects_path, show_progress=not quiet and sys.stderr.isatty())
    summary = {
        "store": str(target), "indexed": report.indexed, "rejected": len(report.rejected),
        "rejects_path": str(report.rejects_path) if report.rejects_path else None,
    }
    if report.language_warning:
        summary["language_warning"] = report.language_warning
    human = f"indexed {report.indexed}, rejected {len(report.rejected)}"
    if report.rejected:
        human += f"; rejected rows written to {report.rejects_path}"
    if report.language_warning:
        human += f"\nwarning: {report.language_warning}"
    _emit_summary(summary, fmt, human)
    if report.rejected:
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def record(
    events: Path = typer.Argument(..., help="Events file with user_id, item_id, [kind], [ts], [weight]."),
    on_unknown_item: OnUnknownItem = typer.Option("raise", "--on-unknown-item", help="raise: record nothing when an item is not indexed; skip: leave those events out."),
    store: Optional[str] = StoreOpt,
    url: Optional[str] = UrlOpt,
    timeout: Optional[float] = TimeoutOpt,
    format: Optional[Format] = FormatOpt,
) -> None:
    """Record a file of user events (the store must hold the items)."""
    fmt = _format(format)
    _input_file(events, "EVENTS")
    target = _target(store, url, timeout, existing=True)
    with _open(target) as rec:
        report = rec.record_many(events, on_unknown_item=on_unknown_item)
    summary = dataclasses.asdict(report)
    human = f"recorded {report.events} events for {report.users} users"
    if getattr(report, "skipped_unknown_items", 0):
        human += f"; skipped {report.skipped_unknown_items} events of unknown items"
    _emit_summary(summary, fmt, human)


@app.command()
def fit(
    store: Optional[str] = StoreOpt,
    url: Optional[str] = UrlOpt,
    timeout: Optional[float] = TimeoutOpt,
    seed: int = typer.Option(0, "--seed"),
    format: Optional[Format] = FormatOpt,
) -> None:
    """(Re)fit the collaborative vectors from every user's events so far (run it after loading
    events, then periodically)."""
    fmt = _format(format)
    target = _target(store, url, timeout, existing=True)
    with _open(target) as rec:
        r = rec.fit_collaborative(seed=seed)
    human = (
        f"fitted collaborative vectors of {r.items} items from {r.users} users and "
        f"{r.interactions} interactions ({r.warm_items} items with enough interactions) in {r.seconds:.1f}s"
    )
    _emit_summary(dataclasses.asdict(r), fmt, human)


@app.command()
def recommend(
    user: str = typer.Argument(..., help="User id."),
    k: int = KOpt,
    filter: Optional[str] = FilterOpt,
    include_seen: bool = typer.Option(False, "--include-seen", help="Also rank items the user has seen."),
    negative: Optional[list[str]] = NegativeOpt,
    rules: Optional[str] = RulesOpt,
    store: Optional[str] = StoreOpt,
    url: Optional[str] = UrlOpt,
    timeout: Optional[float] = TimeoutOpt,
    format: Optional[Format] = FormatOpt,
) -> None:
    """Recommendations for a user."""
    _query(
        lambda rec, spec, ranking: rec.recommend(user, k=k, filter=spec, exclude_seen=not include_seen, negatives=negative, rules=ranking),
        f"Recommendations for {user}", filter, rules, store, url, timeout, format,
    )


@app.command()
def search(
    text: str = typer.Argument(..., help="Free text."),
    k: int = KOpt,
    filter: Optional[str] = FilterOpt,
    rules: Optional[str] = RulesOpt,
    store: Optional[str] = StoreOpt,
    url: Optional[str] = UrlOpt,
    timeout: Optional[float] = TimeoutOpt,
    format: Optional[Format] = FormatOpt,
) -> None:
    """Items closest to a text."""
    if not text.strip():
        raise CliError(f"TEXT {text!r} is empty; give words describing items, e.g. semrec search \"quiet earphones\".")
    _query(
        lambda rec, spec, ranking: rec.search(text, k=k, filter=spec, rules=ranking),
        f"Search: {text!r}", filter, rules, store, url, timeout, format,
    )


@app.command()
def similar(
    item: str = typer.Argument(..., help="Item id."),
    k: int = KOpt,
    filter: Optional[str] = FilterOpt,
    negative: Optional[list[str]] = NegativeOpt,
    rules: Optional[str] = RulesOpt,
    store: Optional[str] = StoreOpt,
    url: Optional[str] = UrlOpt,
    timeout: Optional[float] = TimeoutOpt,
    format: Optional[Format] = FormatOpt,
) -> None:
    """Items closest to an item."""
    _query(
        lambda rec, spec, ranking: rec.similar(item, k=k, filter=spec, negatives=negative, rules=ranking),
        f"Similar to {item}", filter, rules, store, url, timeout, format,
    )


def _query(ask: Callable[[Any, Any, Any], Any], title: str, filter, rules, store, url, timeout, format) -> None:
    """What `recommend`, `search` and `similar` share: options checked before anything opens,
    then `ask(rec, filter, rules)` on the store, its results printed."""
    fmt = _format(format)
    spec = _parse_filter(filter)
    ranking = _parse_rules(rules)
    target = _target(store, url, timeout, existing=True)
    with _open(target) as rec:
        _check_filter_fields(rec, spec)
        rows = _result_rows(ask(rec, spec, ranking))
    _emit_rows(rows, fmt, title=title)


_EXPORT_SUFFIXES = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}


@app.command()
def export(
    out: Path = typer.Argument(..., help="File to write: .parquet, .csv or .jsonl (one row per user and rank)."),
    k: int = KOpt,
    filter: Optional[str] = FilterOpt,
    include_seen: bool = typer.Option(False, "--include-seen", help="Also rank items each user has seen."),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, help="Users per batch."),
    overwrite: bool = OverwriteOpt,
    store: Optional[str] = StoreOpt,
    url: Optional[str] = UrlOpt,
    timeout: Optional[float] = TimeoutOpt,
    format: Optional[Format] = FormatOpt,
) -> None:
    """Write every user's top-k recommendations to a Parquet, CSV or JSONL file; prints a summary."""
    fmt = _format(format)
    kind = _EXPORT_SUFFIXES.get(out.suffix.lower())
    if kind is None:
        raise CliError(f"OUT {str(out)!r} has suffix {out.suffix!r}; expected one of {', '.join(_EXPORT_SUFFIXES)}.")
    _new_file(out, "OUT", overwrite)
    spec = _parse_filter(filter)
    target = _target(store, url, timeout, existing=True)
    import pandas as pd

    frames = []
    with _open(target) as rec:
        _check_filter_fields(rec, spec)
        users = rec.user_ids()
        for start in range(0, len(users), batch_size):
            batch = rec.recommend_many(users[start : start + batch_size], k=k, filter=spec, exclude_seen=not include_seen)
            for user_id, results in batch.items():
                frame = results.to_frame()
                frame.insert(0, "rank", range(1, len(frame) + 1))
                frame.insert(0, "user_id", user_id)
                frames.append(frame)
    columns = ["user_id", *_RESULT_COLUMNS]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    _write_table(table[columns], out, kind)
    summary = {"path": str(out), "format": kind, "users": len(users), "rows": len(table), "k": k}
    _emit_summary(summary, fmt, f"wrote {len(table)} recommendations for {len(users)} users to {out}")


def _write_table(table: Any, out: Path, kind: str) -> None:
    """Write whole or not at all (a temporary file beside `out`, then renamed)."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        if kind == "parquet":
            table.to_parquet(tmp, index=False)
        elif kind == "csv":
            table.assign(tags=table["tags"].map(_cell)).to_csv(tmp, index=False)
        else:
            table.to_json(tmp, orient="records", lines=True, force_ascii=False)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


@app.command()
def evaluate(
    data: Optional[Path] = typer.Argument(None, help="MovieLens folder (movies.csv, ratings.csv, tags.csv)."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="Catalog file of any data set (instead of a MovieLens folder)."),
    events: Optional[Path] = typer.Option(None, "--events", help="Events file: user_id, item_id, ts, and optionally kind, weight."),
    tags: Optional[Path] = typer.Option(None, "--tags", help="Optional dated tags: user_id, item_id, tag, ts."),
    protocol: Protocol = typer.Option("leave-last-out", "--protocol", help="How the events are split."),
    k: int = KOpt,
    include_seen: bool = typer.Option(False, "--include-seen", help="Also rank items already in the user's history."),
    tune: bool = typer.Option(True, "--tune/--no-tune", help="Validation grids (ItemKNN k, ALS, semrec levers) and the levers table."),
    online: bool = typer.Option(True, "--online/--no-online", help="Also serve the default through a Recommender on an embedded store and score that."),
    backend: str = typer.Option("torch", "--backend", help="Encoder backend: torch (fp32 reference) or auto."),
    out: Path = typer.Option(Path("benchmarks/out"), "--out", help="Folder for the report (JSON + Markdown) and the vector cache."),
    seed: int = typer.Option(0, "--seed"),
    format: ReportFormat = typer.Option("markdown", "--format", case_sensitive=False, help="The report on stdout: the Markdown tables, or the whole report as JSON."),
) -> None:
    """Evaluate semrec against popularity, ItemKNN and ALS on one split; prints the report."""
    from .encoders import BACKENDS

    if data is None and (catalog is None or events is None):
        raise CliError("Give a MovieLens folder (DATA), or --catalog and --events files.")
    if data is not None:
        _input_file(data, "DATA", folder_ok=True)
    for path, what in ((catalog, "--catalog"), (events, "--events"), (tags, "--tags")):
        if path is not None:
            _input_file(path, what, folder_ok=True)
    if backend not in BACKENDS:
        raise CliError(f"--backend {backend!r} is not known; expected one of {', '.join(BACKENDS)}.")
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {str(out)!r} is a file; expected a folder.")
    from .evaluation import markdown, run_benchmark

    with _model_loading():
        report = run_benchmark(
            data, catalog=catalog, events=events, tags=tags, protocol=protocol, k=k,
            exclude_seen=not include_seen, tune=tune, online=online, model=_settings().model, backend=backend,
            out_dir=out, cache_dir=out / "cache", seed=seed,
        )
    typer.echo(markdown(report) if format == "markdown" else json.dumps(report, ensure_ascii=False, indent=2, default=str))


@app.command()
def reindex(
    catalog: Optional[Path] = typer.Argument(None, help="Catalog: CSV, Parquet, JSONL, or a folder of Parquet shards."),
    store: Optional[str] = typer.Option(None, "--store", help="Embedded store folder (default: $SEMREC_STORE, else ./semrec-store); an http(s):// URL here is taken as --url."),
    url: Optional[str] = UrlOpt,
    full: bool = typer.Option(False, "--full", help="Delete items that left the catalog (the default)."),
    append: bool = typer.Option(False, "--append", help="Keep items that left the catalog."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build a new version beside the live one, check it, switch (blue-green)."),
    rollback: bool = typer.Option(False, "--rollback", help="Make the previous version live again."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name or folder (e.g. a `semrec finetune` output; default $SEMREC_MODEL or the packaged MiniLM). A new model builds a new version (blue-green)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    rejects: Optional[Path] = typer.Option(None, "--rejects", help="Rejects file, JSONL (default: CATALOG.rejects.jsonl). An existing file other than an earlier rejects file is refused unless --overwrite."),
    overwrite: bool = OverwriteOpt,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Items per checkpointed batch (default: the job's, 256)."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="Collection prefix on a server (default: semrec)."),
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", help="Where a server store's state files live."),
    streams: Optional[int] = typer.Option(None, "--streams", min=1, help="Parallel upload streams (server; default: UploadConfig's, 4)."),
    retries: Optional[int] = typer.Option(None, "--retries", min=0, help="Retries for transient errors (default: UploadConfig's, 5)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.001, help="Request timeout in seconds (server; default: UploadConfig's, 60); the server is first checked for at most $SEMREC_TIMEOUT (5) seconds."),
    ray: bool = typer.Option(False, "--ray", help="Encode on a Ray cluster (Parquet shards, a Qdrant server): always builds a new version and switches (the distributed extra)."),
    actors: Optional[int] = typer.Option(None, "--actors", min=1, help="With --ray: encoder actors (GPU actors when the cluster has GPUs; default 1)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --ray: the cluster's address (default: start a local one)."),
    num_cpus: Optional[int] = typer.Option(None, "--num-cpus", min=1, help="With --ray: CPUs of a local cluster."),
) -> None:
    """Re-index a catalog: incremental by content, resumable, blue-green on a model change.
    Prints a JSON summary as the last line of every run, errors included."""
    _state.json_errors = True
    if full + append + rebuild + rollback > 1:
        raise UsageError("use at most one of --full, --append, --rebuild, --rollback")
    if ray and (append or rebuild or rollback):
        raise UsageError("--ray always builds a new version and switches to it; drop --append, --rebuild and --rollback")
    if not ray and (actors is not None or ray_address is not None or num_cpus is not None):
        raise UsageError("--actors, --ray-address and --num-cpus go with --ray")
    if store is not None and url is None and store.startswith(("http://", "https://")):
        store, url = None, store
    settings = _settings()
    target = _target(store, url, settings.timeout if timeout is None else min(timeout, settings.timeout), existing=rollback)
    if not rollback:
        if catalog is None:
            raise CliError("CATALOG is required (or pass --rollback).")
        _input_file(catalog, "CATALOG", folder_ok=True)
        rejects = _rejects_file(rejects, catalog, overwrite)
    if ray and target.url is None:
        raise CliError(f"--ray writes to a Qdrant server, not an embedded store ({target.path}): pass --url.")
    if target.url:
        _state.url = target.url
        _probe(target.url, target.timeout, target.api_key)
    from .reindex import UploadConfig
    from .reindex import reindex as run_reindex
    from .reindex import rollback as run_rollback

    upload = UploadConfig.given(streams=streams, retries=retries, timeout_s=timeout)
    given_prefix = {"prefix": prefix} if prefix is not None else {}  # else the store's default
    if ray:
        _reindex_on_ray(catalog, target.url, model or settings.model, actors, batch_size, given_prefix, settings.qdrant_key, rejects, upload, ray_address, num_cpus)

    if rollback:
        version = run_rollback(str(target), state_dir=state_dir, **given_prefix)
        typer.echo(json.dumps({"rollback": True, "store": str(target), "version": version}))
        return
    mode = "append" if append else "rebuild" if rebuild else "full"
    with _progress(quiet) as progress, _model_loading():
        summary = run_reindex(
            catalog, str(target), mode=mode, model=model or settings.model, batch_size=batch_size,
            rejects_path=rejects, upload=upload,
            api_key=settings.qdrant_key, state_dir=state_dir, progress=progress, **given_prefix,
        )
    if summary.rejected and not quiet:
        _note(f"{summary.rejected} row(s) rejected; written to {summary.rejects_path}")
    typer.echo(summary.to_json())
    raise typer.Exit(summary.exit_code)


def _reindex_on_ray(catalog, url, model, actors, batch_size, given_prefix, api_key, rejects, upload, address, num_cpus) -> None:
    """`semrec reindex --ray`: the same pipeline, encoded on a Ray cluster (semrec.reindex.ray_reindex)."""
    from .errors import require
    from .reindex import ray_reindex

    ray = require("ray", "distributed")
    ray.init(address=address, num_cpus=num_cpus) if address or num_cpus else ray.init()
    summary = ray_reindex(
        catalog, url, model=model, actors=actors or 1, batch_size=batch_size, api_key=api_key, **given_prefix,
        rejects_path=rejects, upload=upload,
    )
    typer.echo(summary.to_json())
    raise typer.Exit(summary.exit_code)


class _progress:
    """A Rich progress bar per phase on stderr (nothing with --quiet or when stderr is not a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        if self.quiet or not sys.stderr.isatty():
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=_console(stderr=True))
        self.bar.start()
        return self.update

    def update(self, phase: str, done: int, total: int) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.bar.add_task(phase, total=total)
        self.bar.update(self.tasks[phase], completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def reindex_main(argv: Sequence[str] | None = None, prog_name: str = "python -m indexing.reindex") -> int:
    """`semrec reindex` as its own program (`python -m indexing.reindex`): the same command,
    options and JSON last line. Returns the exit code; a command-line parsing error raises
    SystemExit(2), as argparse does."""
    command = _with_common_options(typer.main.get_command(app).commands["reindex"])
    code = _invoke(lambda: command.main(args=None if argv is None else list(argv), prog_name=prog_name, standalone_mode=False))
    if _state.usage_error:
        raise SystemExit(code)
    return code


@app.command()
def serve(
    store: Optional[str] = StoreOpt,
    url: Optional[str] = UrlOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, help="Server processes (a Qdrant server is needed for more than 1)."),
    timeout: Optional[float] = TimeoutOpt,
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level (access logs are JSON lines)."),
    background_updates: Optional[bool] = typer.Option(None, "--background-updates/--sync-updates", help="Background (the default): an event is answered once the profile is stored; its summary vector and the items' popularity catch up on background threads. Sync: both are updated before the answer."),
) -> None:
    """Serve events and recommendations over HTTP (FastAPI; OpenAPI at /docs and /openapi.json).

    An embedded store belongs to one process: serve it with one worker, or use a Qdrant server
    (--url) to run several. SEMREC_API_KEY, when set, is required from every client.
    """
    target = _target(store, url, timeout, existing=False)
    if workers > 1 and target.url is None:
        raise CliError(
            f"--workers {workers} needs a Qdrant server: an embedded store ({target.path}) can be open in "
            "one process only. Serve it with --workers 1, or index into a Qdrant server and pass --url."
        )
    try:
        import uvicorn

        from .service import ServiceSettings, create_app
    except ImportError:
        raise CliError("semrec serve needs the serve extra: pip install 'semrec[serve]'", EXIT_FAILED) from None
    settings = _settings()
    if target.url:
        _probe(target.url, target.timeout, target.api_key)
    service = ServiceSettings(
        store=str(target.path) if target.path else None, url=target.url, qdrant_api_key=target.api_key,
        api_key=settings.api_key, model=settings.model, device=settings.device, timeout=target.timeout,
        **({"background_updates": background_updates} if background_updates is not None else {}),
    )
    _configure_json_logs(log_level)
    if workers > 1:
        os.environ["SEMREC_SERVICE_SETTINGS"] = service.model_dump_json()
        uvicorn.run("semrec.service:app_from_environment", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, access_log=False, timeout_graceful_shutdown=30)
    else:
        uvicorn.run(create_app(service), host=host, port=port, log_level=log_level, access_log=False,
                    timeout_graceful_shutdown=30)


def _configure_json_logs(level: str) -> None:
    """semrec's access log as one JSON object per line on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("semrec.access")
    access.handlers[:] = [handler]
    access.setLevel(level.upper())
    access.propagate = False


@app.command()
def finetune(
    catalog: Path = typer.Option(..., "--catalog", help="Catalog file: CSV, Parquet or JSONL."),
    events: Path = typer.Option(..., "--events", help="Events file: user_id, item_id, ts, and optionally kind, weight."),
    out: Path = typer.Option(..., "--out", help="Folder for the fine-tuned model (sentence-transformers, safetensors); a folder with files in it is refused unless --overwrite."),
    max_steps: int = typer.Option(1500, "--max-steps", min=1, help="Optimiser steps at most (CPU adapter: ~1-3 min)."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", min=1, help="Seconds of training at most (non-deterministic)."),
    method: Method = typer.Option("auto", "--method", help="auto (GPU: full, CPU: adapter), full or adapter."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="Model to start from ($SEMREC_MODEL; default all-MiniLM-L6-v2)."),
    seed: int = typer.Option(0, "--seed"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into an --out folder that already has files."),
    format: Optional[Format] = FormatOpt,
) -> None:
    """Fine-tune the encoder on interactions; prints before/after metrics. Re-index to serve with it."""
    fmt = _format(format)
    _input_file(catalog, "--catalog", folder_ok=True)
    _input_file(events, "--events", folder_ok=True)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise CliError(f"--out {str(out)!r} already exists and is not an empty folder; pass --overwrite to write into it, or choose a new folder.")
    from .training import TrainConfig
    from .training import finetune as run_finetune

    with _model_loading():
        report = run_finetune(catalog, events, out, base_model=base_model or _settings().model, method=method,
                              config=TrainConfig(max_steps=max_steps, time_budget=time_budget, seed=seed))
    serve = f"semrec reindex CATALOG --model {report.out}"
    summary = {"out": str(report.out), "method": getattr(report, "method", method), "metrics": report.metrics, "serve": serve}
    human = json.dumps(report.metrics, indent=2) + f"\nmodel written to {report.out}; serve it with: {serve}"
    _emit_summary(summary, fmt, human)


if __name__ == "__main__":  # pragma: no cover
    app()

"""The exceptions semrec raises. Each message names the bad value, what was expected, and the fix."""

from __future__ import annotations


class SemrecError(Exception):
    """Base class of every error semrec raises on purpose."""


class ConfigError(SemrecError, ValueError):
    """An argument or setting has a value semrec cannot use."""


class StateFileError(ConfigError):
    """A store's state file (`CURRENT`, `semrec.json`, `reindex-state.sqlite`, ...) is missing,
    unreadable or malformed; the message names the file, what is wrong and the repair."""


class CatalogError(SemrecError, ValueError):
    """A catalog as a whole cannot be read (missing column, unreadable file)."""


class ModelMismatchError(SemrecError):
    """A store was built with another model than the one in use."""


class StoreLockedError(SemrecError):
    """A store folder is already opened by another process (or another handle)."""


class ConcurrentWriteError(SemrecError):
    """A write kept losing to other writers of the same user and gave up (nothing was written)."""


class NotIndexedError(SemrecError, KeyError):
    """An item id is not in the store."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnknownUserError(SemrecError, KeyError):
    """A user has no recorded events and the policy is to raise."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingExtraError(SemrecError, ImportError):
    """An optional dependency is not installed."""


def require(module: str, extra: str):
    """Import an optional dependency or fail with the exact install line.

    Example:
        >>> np = require("numpy", "core")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module!r} is needed for this feature but is not installed. "
            f"Install it with: pip install 'semrec[{extra}]'"
        ) from exc

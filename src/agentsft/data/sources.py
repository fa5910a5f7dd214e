"""Sources: where records come from, before any layout is read.

- a JSON or JSONL file: read here, so that every error names its line;
- a Parquet, Arrow, CSV or TSV file, a folder written by ``datasets``' ``save_to_disk``, or
  a hub dataset id (``GAIR/lima``): opened by ``datasets``, each record named
  ``SOURCE:row N``;
- any other folder: the data files in it and its subfolders, each read as above. A hub id uses ``--data-config``, ``--split`` and
  ``--revision``, and the token models use; offline, one not in the cache is one line.

Arrow gives every row of a column the same shape, filling the keys a row lacks with null;
those nulls are dropped again, so a row reads as it was written.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentsft.errors import DataError

TABLES = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".tsv": "csv"}
"""File suffixes ``datasets`` reads, and its builder for each."""
SUFFIXES = (".json", ".jsonl", *TABLES)
SAVED = ("dataset_info.json", "state.json", "dataset_dict.json")
"""Files that mark a folder written by ``save_to_disk``."""
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


@dataclass(frozen=True)
class SourceOptions:
    """How to open a dataset: its configuration, split and revision, and the hub token
    (never logged)."""

    config: str | None = None
    split: str | None = None
    revision: str | None = None
    token: str | None = None

    def __repr__(self) -> str:
        return (f"SourceOptions(config={self.config!r}, split={self.split!r}, "
                f"revision={self.revision!r}, token={'***' if self.token else None})")


def is_saved(path: str) -> bool:
    return Path(path).is_dir() and any((Path(path) / name).is_file() for name in SAVED)


def expanded(path: str) -> list[str]:
    """``path``, or for a folder (not a saved dataset) the data files in it and below, a
    saved dataset among them as one source."""
    if not Path(path).is_dir() or is_saved(path):
        return [path]
    files = []
    for top, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for d in [d for d in dirs if is_saved(os.path.join(top, d))]:
            files.append(os.path.join(top, d))  # a saved dataset inside: one source
            dirs.remove(d)
        files += [os.path.join(top, n) for n in names if Path(n).suffix.lower() in SUFFIXES]
    files.sort()
    if not files:
        raise DataError("holds no data files", where=path,
                        fix=f"put {', '.join(SUFFIXES)} files in it, or pass the files themselves")
    return files


def is_table(path: str) -> bool:
    """Whether ``path`` is something ``datasets`` opens rather than a JSON file read here."""
    p = Path(path)
    if is_saved(path):
        return True
    if p.suffix.lower() in TABLES:
        return True
    return not p.exists() and p.suffix.lower() not in (".json", ".jsonl") and bool(HUB_ID.fullmatch(path))


def table_records(path: str, options: SourceOptions | None = None) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` for every row of a dataset source."""
    dataset, label = open_dataset(path, options or SourceOptions())
    for i, row in enumerate(dataset, start=1):
        yield f"{label}:row {i}", without_nulls(row)


def open_dataset(path: str, options: SourceOptions) -> tuple[Any, str]:
    """The split of ``path`` to read, opened by ``datasets``, and how errors name it."""
    import datasets
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if p.is_file():
            kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
            return datasets.load_dataset(TABLES[suffix], data_files=str(p), split="train", **kwargs), path
        if is_saved(path):
            return chosen_split(datasets.load_from_disk(str(p)), options.split, path), path
    except DataError:
        raise
    except Exception as e:  # datasets raises many kinds for a file it cannot read
        raise DataError(f"datasets cannot read it ({first_line(e)})", where=path,
                        fix="check the file is whole and of the kind its suffix says") from None
    return hub_dataset(path, options)


def hub_dataset(name: str, options: SourceOptions) -> tuple[Any, str]:
    import datasets
    split = options.split or "train"
    label = f"{name}[{split}]" if options.config is None else f"{name}/{options.config}[{split}]"
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # its warnings about each failed request precede our line
    try:
        dataset = datasets.load_dataset(name, options.config, split=split, revision=options.revision,
                                        token=options.token)
    except Exception as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        tried = "the hub cache (offline)" if offline else "the hub and its cache"
        raise DataError(f"no local file or folder of that name, and no dataset found in {tried} "
                        f"({first_line(e)})", where=label,
                        fix="check the path or the dataset id; where there is no network, save it "
                            "elsewhere with datasets' save_to_disk and pass that folder") from None
    finally:
        hub_log.setLevel(level)
    return dataset, label


def chosen_split(dataset: Any, split: str | None, path: str) -> Any:
    """One split of a dataset with several: ``split``, else the only one, else ``train``."""
    if not hasattr(dataset, "keys"):
        return dataset
    names = list(dataset.keys())
    wanted = split or (names[0] if len(names) == 1 else "train")
    if wanted not in names:
        raise DataError(f"has no split {wanted!r} (it has {', '.join(names)})", where=path,
                        fix="pass --split with one of them")
    return dataset[wanted]


def without_nulls(value: Any) -> Any:
    """``value`` with the null entries of its objects dropped, nested ones too."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]

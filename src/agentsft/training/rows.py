"""The tokenized rows of a run, made once and kept beside it.

Every source of ``data.train`` (and ``data.val``) is streamed a conversation at a time,
rendered, tokenized and written to an Arrow file, ``RUN_DIR/tokenized/rows.arrow``: one
row per valid conversation, with what became of it (kept, truncated, dropped, skipped).
Training reads it memory-mapped, so data larger than memory trains in bounded memory. The
file is keyed by what shapes its contents (the sources and their files' sizes and times,
the tokenizer, the template, the loss policy and the length limit): a resumed run, or a
run started again on the same data, reuses it instead of tokenizing again. Which rows are
held out and how sources are weighted is decided afterwards, from the file, so changing
``val_fraction``, a weight or the seed does not tokenize again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from agentsft.data.collate import group_key
from agentsft.data.readers import ReadReport, stream_conversations
from agentsft.data.sources import SourceOptions
from agentsft.data.templates import AgentTemplate
from agentsft.data.tokenize import encode_one, special_strings
from agentsft.errors import DataError
from agentsft.files import atomic_file, write_text_atomically
from agentsft.hub import is_main, say

FATES = ("ok", "truncated", "dropped", "skipped")
"""What became of a conversation; its row's ``fate`` is the index here."""
BATCH = 1000
"""Rows written to the Arrow file at a time: the memory the writer holds."""
LISTED = 20
"""Errors kept to show for each source; the rest are counted."""


@dataclasses.dataclass
class Source:
    """One entry of ``data.train`` or ``data.val``, as read."""

    path: str
    options: SourceOptions
    weight: float = 1.0
    val: bool = False
    """A validation source (``data.val``): all of it held out, never trained on."""

    def fingerprint(self) -> list:
        """What identifies its contents: local files (a folder's, all of them) by size and
        time; anything else by name and options (a hub dataset at a given revision)."""
        named = [self.path, self.options.config, self.options.split, self.options.revision]
        if not os.path.exists(self.path):
            return named
        path = Path(self.path)
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        return named + [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()]


@dataclasses.dataclass
class Settings:
    """What the rows depend on, besides the sources."""

    format: str
    policy: str
    max_length: int
    truncation: str
    skip_invalid: bool


def cache_key(sources: list[Source], settings: Settings, tokenizer: Any, template: AgentTemplate) -> str:
    """A digest of everything that shapes the rows (not weights, seed or held-out share)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    described = {
        "agentsft": importlib.metadata.version("agentsft"), "sources": [[s.val, s.fingerprint()] for s in sources],
        "settings": dataclasses.asdict(settings), "template": template.name,
        "tokenizer": hashlib.sha256(vocab.encode()).hexdigest(),
        "chat_template": getattr(tokenizer, "chat_template", None),
        "specials": special_strings(tokenizer)}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


@dataclasses.dataclass
class Tokenized:
    """The rows file of a run, open, and what reading each source left out."""

    table: Any
    """A ``datasets.Dataset`` memory-mapped on the rows file."""
    sizes: list[int]
    """Rows (valid conversations) of each source, in order."""
    read_skipped: list[dict]
    """Per source: ``count`` of invalid records skipped while reading, and the ``first`` few."""

    def starts(self) -> list[int]:
        return [int(x) for x in np.cumsum([0] + self.sizes[:-1])]

    def column(self, name: str) -> np.ndarray:
        return self.table.data.column(name).to_numpy()


def tokenized(folder: Path, sources: list[Source], settings: Settings, tokenizer: Any,
              template: AgentTemplate, build: bool = True) -> Tokenized:
    """The rows of ``sources``: read from ``folder`` when made there before with the same
    key, else made now (``build``), or waited for (another process of this node makes them)."""
    key = cache_key(sources, settings, tokenizer, template)
    meta_path = folder / "meta.json"
    if not build:
        waited = time.monotonic()
        while read_meta(meta_path, key) is None:
            if time.monotonic() - waited > 5:
                say(f"waiting for the first process to tokenize into {folder}")
                waited = float("inf")
            time.sleep(0.2)
    meta = read_meta(meta_path, key)
    if meta is None:
        meta = write_rows(folder, key, sources, settings, tokenizer, template)
    else:
        say(f"tokenized rows reused from {folder} ({sum(meta['sizes'])} conversations)")
    import datasets
    table = datasets.Dataset.from_file(str(folder / "rows.arrow"), in_memory=False)
    return Tokenized(table, meta["sizes"], meta["read_skipped"])


def read_meta(path: Path, key: str) -> dict | None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("key") == key and (path.parent / "rows.arrow").exists() else None


def write_rows(folder: Path, key: str, sources: list[Source], settings: Settings, tokenizer: Any,
               template: AgentTemplate) -> dict:
    """Stream, tokenize and write every source's rows; the key is written last, so a file
    cut short by a kill is never taken for a whole one."""
    made = [p for p in (folder.parent, folder) if not p.exists()]
    try:
        return rows_file(folder, key, sources, settings, tokenizer, template)
    except BaseException:
        for p in reversed(made):  # bad data leaves no run folder behind
            shutil.rmtree(p, ignore_errors=True)
        raise


def rows_file(folder: Path, key: str, sources: list[Source], settings: Settings, tokenizer: Any,
              template: AgentTemplate) -> dict:
    import pyarrow as pa
    (folder / "meta.json").unlink(missing_ok=True)
    schema = pa.schema([("source", pa.int16()), ("fate", pa.int8()), ("note", pa.string()),
                        ("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())),
                        ("trained", pa.int32()), ("group", pa.int64())])
    sizes, read_skipped = [], []
    bar = tqdm(desc="tokenizing", unit="conv", delay=2, leave=False,
               disable=not is_main())
    with atomic_file(folder / "rows.arrow") as tmp, pa.OSFile(str(tmp), "wb") as f, \
            pa.ipc.new_stream(f, schema) as writer:
        for i, source in enumerate(sources):
            report = ReadReport()
            count, batch = 0, []
            for row in source_rows(source, settings, tokenizer, template, report):
                batch.append({"source": i, **row})
                count += 1
                if len(batch) == BATCH:
                    writer.write_batch(pa.RecordBatch.from_pylist(batch, schema))
                    bar.update(len(batch))
                    batch = []
            if batch:
                writer.write_batch(pa.RecordBatch.from_pylist(batch, schema))
                bar.update(len(batch))
            sizes.append(count)
            read_skipped.append({"count": len(report.skipped),
                                 "first": [str(e) for e in report.skipped[:LISTED]]})
    bar.close()
    meta = {"key": key, "sizes": sizes, "read_skipped": read_skipped,
            "sources": [s.path for s in sources]}
    write_text_atomically(folder / "meta.json", json.dumps(meta, indent=1) + "\n")
    return meta


def source_rows(source: Source, settings: Settings, tokenizer: Any, template: AgentTemplate,
                report: ReadReport) -> Iterator[dict]:
    """One row per valid conversation of ``source``: its tokens and labels, or why it has none."""
    specials = special_strings(tokenizer)
    for conv in stream_conversations(source.path, settings.format, settings.skip_invalid, report,
                                     source.options):
        try:
            ex, fate = encode_one(conv, tokenizer, template, settings.policy, settings.max_length,
                                  settings.truncation, specials)
        except DataError as e:
            if not settings.skip_invalid:
                raise
            yield tokenless("skipped", str(e))
            continue
        if ex is None:
            yield tokenless(fate, conv.source or "?")
            continue
        row = {"input_ids": ex.input_ids, "labels": ex.labels}
        yield {"fate": FATES.index(fate), "note": conv.source or "?" if fate != "ok" else "",
               **row, "trained": ex.n_trained, "group": group_key(row)}


def tokenless(fate: str, note: str) -> dict:
    """The row of a conversation left out (dropped or skipped): why, and where it came from."""
    return {"fate": FATES.index(fate), "note": note, "input_ids": [], "labels": [], "trained": 0,
            "group": 0}


class Rows(torch.utils.data.Dataset):
    """Training or validation rows: positions in the memory-mapped rows file."""

    def __init__(self, table: Any, index: np.ndarray):
        self.keys = table.data.column("group").to_numpy()
        self.table = table.select_columns(["input_ids", "labels"])
        self.index = np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.table[int(self.index[i])]

    def group_keys(self) -> np.ndarray:
        """Each row's :func:`group_key`, read from its column without touching the tokens."""
        return self.keys[self.index]


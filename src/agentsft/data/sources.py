"""Sources: where records come from, before any layout is read.

- a JSON or JSONL file: read here, so that every error names its line (JSONL a line at a
  time, so memory stays flat however long the file);
- a Parquet, Arrow, CSV or TSV file, a folder written by ``datasets``' ``save_to_disk``, or
  a hub dataset id (``GAIR/lima``): opened by ``datasets``, each record named
  ``SOURCE:row N``;
- any other folder: the data files in it and its subfolders, each read as above.

A hub id uses ``--data-config``, ``--split`` and ``--revision``, and the token models use;
offline, one not in the cache is one line.

Arrow gives every row of a column the same shape, filling the keys a row lacks with null;
those nulls are dropped again, so a row reads as it was written.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentsft.data.schema import DECODER, loads
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
        # BFCL's gold calls, joined to the question files beside them (readers.possible_answers)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "possible_answer")
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
    with quiet_libraries():
        dataset, label = open_dataset(path, options or SourceOptions())
        rows = iter(dataset)
        for i in itertools.count(1):
            try:
                row = next(rows)
            except StopIteration:
                return
            except Exception as e:  # a streamed file is read as it goes: a broken one fails here
                raise DataError(f"datasets cannot read row {i} ({first_line(e)})", where=label,
                                fix="check the file is whole and of the kind its suffix says") from None
            yield f"{label}:row {i}", without_nulls(row)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """``datasets`` and the hub log each failure before raising it; ours is the one line."""
    import datasets  # noqa: F401  (importing it sets its loggers' levels: first, then ours)
    loggers = [logging.getLogger(name) for name in ("datasets", "huggingface_hub")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def open_dataset(path: str, options: SourceOptions) -> tuple[Any, str]:
    """The split of ``path`` to read, opened by ``datasets``, and how errors name it."""
    import datasets
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if p.is_file():  # streamed: read in batches, never converted or held whole
            kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
            return datasets.load_dataset(TABLES[suffix], data_files=str(p), split="train",
                                         streaming=True, **kwargs), path
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


# ---------------------------------------------------------------------------
# Files: JSONL (one record a line) or JSON (a list of records, or one record).


def iter_records(path: str, skipped: list[DataError] | None) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` for every record, ``where`` unique (``file:line``). JSONL is read
    a line at a time (memory stays flat); a JSON list or one pretty-printed record whole.

    Invalid JSON raises, or is added to ``skipped`` when that list is given.
    """
    try:
        # newline="\n": lines end at "\n" only (str.splitlines also breaks at U+2028 in strings)
        with open(path, encoding="utf-8", newline="\n") as f:
            head = head_lines(f)
            body = "".join(head).lstrip("\ufeff")
            start = len(body) - len(body.lstrip())
            if body[start:start + 1] == "[" or (body[start:start + 1] == "{" and not is_jsonl(body[start:])):
                yield from whole_records(path, "".join(head) + f.read(), skipped)
                return
            yield from jsonl_records(path, itertools.chain(head, f), skipped)
    except FileNotFoundError:
        raise DataError("file not found", where=path, fix="check the path") from None
    except IsADirectoryError:
        raise DataError("is a directory", where=path, fix="pass the data files inside it") from None
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason})", where=path,
                        fix="save the file as UTF-8 JSON or JSONL") from None
    except OSError as e:
        raise DataError(f"cannot read the file ({e.strerror})", where=path,
                        fix="check its permissions") from None


def head_lines(f: Any) -> list[str]:
    """The file's lines up to 12 past its first non-blank one: enough to tell JSONL."""
    lines: list[str] = []
    seen = None
    for line in f:
        lines.append(line)
        if seen is None and line.strip("\ufeff \t\r\n"):
            seen = len(lines)
        if seen is not None and len(lines) - seen >= 12:
            break
    return lines


def is_jsonl(body: str) -> bool:
    """Whether text that opens with ``{`` is JSONL rather than one record over many lines."""
    if "\n" not in body.strip():
        return True
    first, *rest = body.split("\n", 12)
    return parses(first) or any(line.startswith("{") and parses(line) for line in rest[:10])


def whole_records(path: str, text: str, skipped: list[DataError] | None) -> Iterator[tuple[str, Any]]:
    """A JSON list of records, or one record over many lines."""
    body = text.lstrip("\ufeff")
    start = len(body) - len(body.lstrip())
    if body[start:start + 1] == "[":
        yield from json_array(path, body, start)
        return
    try:
        record = loads(body)
    except (json.JSONDecodeError, ValueError, RecursionError) as e:
        if getattr(e, "lineno", 1) > text_line(body, start):
            raise json_error(path, body, e, start) from None
        # broken on its first line: JSONL with a bad first record
        yield from jsonl_records(path, iter(text.split("\n")), skipped)
        return
    yield f"{path}:{text_line(body, start)}", record


def jsonl_records(path: str, lines: Iterator[str], skipped: list[DataError] | None) -> Iterator[tuple[str, Any]]:
    for n, line in enumerate(lines, start=1):
        line = line.removesuffix("\n").lstrip("\ufeff") if n == 1 else line.removesuffix("\n")
        if not line.strip():
            continue
        try:
            yield f"{path}:{n}", loads(line)
        except (json.JSONDecodeError, ValueError, RecursionError) as e:
            err = json_error(path, line, e, 0, line_no=n)
            if skipped is None:
                raise err from None
            skipped.append(err)


def parses(text: str) -> bool:
    try:
        loads(text)
    except (json.JSONDecodeError, ValueError, RecursionError):
        return False
    return True


def json_error(path: str, text: str, e: Exception, offset: int, line_no: int | None = None) -> DataError:
    """A DataError for invalid JSON at the right line of ``path``."""
    if isinstance(e, json.JSONDecodeError):
        line = line_no if line_no is not None else e.lineno
        return DataError(f"invalid JSON: {e.msg} (column {e.colno})", where=f"{path}:{line}",
                         fix="write one complete JSON object per line (JSONL) or a JSON list")
    line = line_no if line_no is not None else text_line(text, offset)
    problem = "nested too deeply" if isinstance(e, RecursionError) else str(e)
    return DataError(f"invalid JSON: {problem}", where=f"{path}:{line}", fix="fix the JSON")


def json_array(path: str, text: str, pos: int) -> Iterator[tuple[str, Any]]:
    """The elements of a top-level JSON array, each located by the line it starts on
    (and its position in the list when several start on one line)."""
    pos += 1
    starts: Counter = Counter()
    index = 0
    while True:
        pos = skip_space(text, pos)
        if text[pos:pos + 1] == "]":
            rest = skip_space(text, pos + 1)
            if rest < len(text):
                raise DataError("invalid JSON: text after the closing ]",
                                where=f"{path}:{text_line(text, rest)}",
                                fix="keep one JSON list per .json file, or use JSONL")
            return
        try:
            value, end = DECODER.raw_decode(text, pos)
        except (json.JSONDecodeError, ValueError, RecursionError) as e:
            raise json_error(path, text, e, pos) from None
        line = text_line(text, pos)
        starts[line] += 1
        index += 1
        yield (f"{path}:{line}" if starts[line] == 1 else f"{path}:{line} (record {index})"), value
        pos = skip_space(text, end)
        if text[pos:pos + 1] == ",":
            pos += 1
        elif text[pos:pos + 1] != "]":
            raise DataError("invalid JSON: expected ',' or ']' after a record",
                            where=f"{path}:{text_line(text, pos)}", fix="fix the JSON syntax")


def skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def text_line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1

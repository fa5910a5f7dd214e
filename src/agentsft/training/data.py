"""Preparing the data of a run: its sources' token rows (made once, kept beside the run),
a held-out validation split and the weighted mix; anything skipped, dropped or truncated
is counted and said."""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path
from typing import Any

import numpy as np

from agentsft.config import Config, hf_token
from agentsft.data.readers import ReadReport, stream_conversations
from agentsft.data.schema import Conversation
from agentsft.data.sources import SourceOptions
from agentsft.data.templates import AgentTemplate, get_template
from agentsft.errors import AgentsftError
from agentsft.hub import context_length, load_tokenizer, quiet_loading, say
from agentsft.training.rows import FATES, LISTED, Rows, Settings, Source, Tokenized, tokenized
from agentsft.training.rundir import RunDir


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``0..n-1`` split into kept and held out (each in order), seeded: never the
    training set itself. None held out when too few to spare."""
    n_val = round(n * fraction)
    if fraction <= 0 or n_val < 1 or n - n_val < 1:
        return np.arange(n), np.arange(0)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = np.zeros(n, dtype=bool)
    held[np.asarray(order[:n_val])] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def prepare_data(cfg: Config, tokenizer: Any, template: Any, mix: list[dict] | None = None
                 ) -> tuple[Rows, Rows, list[Conversation]]:
    """Training rows, validation rows, and (where tool evaluation runs while training) the
    validation conversations; how much of each source was used goes in ``mix``. The rows are
    tokenized once into ``RUN_DIR/tokenized`` (see :mod:`agentsft.training.rows`)."""
    d = cfg.data
    if not d.train:
        raise AgentsftError("no training data. Fix: pass --data FILE (or set data.train)")
    if not cfg.training.output:
        raise AgentsftError("no run directory. Fix: pass --output runs/NAME (or set training.output)")
    base = SourceOptions(config=d.config, split=d.split, revision=d.revision, token=hf_token())
    sources = [train_source(entry, base) for entry in d.train] + [
        Source(str(path), base, val=True) for path in d.val]
    settings = Settings(d.format, d.policy, d.max_length, d.truncation, d.skip_invalid)
    made = tokenized(RunDir(Path(cfg.training.output)).tokenized, sources, settings, tokenizer,
                     template, build=int(os.environ.get("LOCAL_RANK", "0")) == 0)
    for source, skipped in zip(sources, made.read_skipped):
        report_skipped(skipped["first"], skipped["count"],
                       f"invalid {'validation ' if source.val else ''}record in {source.path}")
    train_at, val_at, held = chosen_rows(cfg, sources, made, mix if mix is not None else [])
    train_rows = Rows(made.table, kept_rows(made, train_at, "training", d))
    val_rows = Rows(made.table, kept_rows(made, val_at, "validation", d))
    if not len(train_rows):
        raise AgentsftError(f"nothing to train on: no training example has a trained token "
                            f"(data: {', '.join(map(str, d.train))}). Fix: check data.policy, the train "
                            f"flags and data.max_length")
    check_max_length(cfg)
    trained = int(made.column("trained")[train_rows.index].sum())
    say(f"data: {len(train_rows)} training examples ({trained} trained tokens), "
        f"{len(val_rows)} validation; template {template.name}, policy {d.policy}")
    val_convs = held_conversations(sources, held, settings) if cfg.eval.tool_eval_every else []
    return train_rows, val_rows, val_convs


def train_source(entry: str | dict, base: SourceOptions) -> Source:
    """An entry of ``data.train``: a path, or ``{path, weight, split, config, revision}``."""
    spec = entry if isinstance(entry, dict) else {"path": entry}
    options = dataclasses.replace(base, **{k: spec[k] for k in ("split", "config", "revision")
                                           if spec.get(k) is not None})
    return Source(str(spec["path"]), options, float(spec.get("weight", 1)))


def chosen_rows(cfg: Config, sources: list[Source], made: Tokenized, mix: list[dict]
                ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Positions in the rows file of the training rows (weighted) and the validation rows,
    and each source's held-out conversations (by their number in it). Each source's
    validation share is held out before its weight applies (a repeated conversation never
    lands on both sides); weight 2 takes each conversation twice, 0.5 a seeded half. The mix
    is said and added to ``mix`` (train() writes it to RUN_DIR/data_mix.json)."""
    d, rng = cfg.data, random.Random(cfg.training.seed)
    train, val, held_by_source = [], [], []
    has_val = any(s.val for s in sources)
    for source, start, size, skipped in zip(sources, made.starts(), made.sizes, made.read_skipped):
        if source.val:
            val.append(np.arange(start, start + size))
            held_by_source.append(np.arange(size))
            continue
        kept, held = (np.arange(size), np.arange(0)) if has_val else split_validation(
            size, d.val_fraction, cfg.training.seed)
        used = weighted(kept, source.weight, rng)
        train.append(start + used)
        val.append(start + held)
        held_by_source.append(held)
        weight = int(source.weight) if source.weight == int(source.weight) else source.weight
        mix.append({"path": source.path, "weight": weight, "read": size, "skipped": skipped["count"],
                    "held_out": len(held), "trained_on": len(used)})
    if len(mix) > 1 or any(m["weight"] != 1 for m in mix):
        say("data mix: " + "; ".join(f"{m['path']} x{m['weight']}: {m['trained_on']} of {m['read'] - m['held_out']}"
                                     for m in mix))
    return np.concatenate(train), np.concatenate(val), held_by_source


def kept_rows(made: Tokenized, at: np.ndarray, name: str, d: Any) -> np.ndarray:
    """The rows at ``at`` that have tokens; the skipped, dropped and cut ones said."""
    fates = made.column("fate")[at]
    for fate in ("skipped", "dropped", "truncated"):
        where = at[fates == FATES.index(fate)]
        if not len(where):
            continue
        notes = [made.table[int(i)]["note"] for i in where[:LISTED]]
        if fate == "skipped":
            report_skipped(notes, len(where), f"{name} example")
        elif fate == "dropped":
            say(f"dropped {len(where)} {name} example(s) longer than data.max_length="
                f"{d.max_length} (first: {notes[0]}); set data.truncation=truncate to keep them")
        else:
            say(f"truncated {len(where)} {name} example(s) to {d.max_length} tokens")
    return at[(fates == FATES.index("ok")) | (fates == FATES.index("truncated"))]


def held_conversations(sources: list[Source], held: list[np.ndarray], settings: Settings
                       ) -> list[Conversation]:
    """The held-out conversations themselves (tool evaluation generates from them), read
    again from their sources: only they are kept in memory."""
    convs = []
    for source, numbers in zip(sources, held):
        wanted = set(numbers.tolist())
        if wanted:
            stream = stream_conversations(source.path, settings.format, settings.skip_invalid,
                                          ReadReport(), source.options)
            convs += [c for i, c in enumerate(stream) if i in wanted]
    return convs


def weighted(rows: np.ndarray, weight: float, rng: random.Random) -> np.ndarray:
    """``rows`` taken ``weight`` times: whole copies, then a seeded sample for the rest."""
    whole, part = int(weight), weight - int(weight)
    picks = rng.sample(range(len(rows)), round(part * len(rows)))
    return np.concatenate([np.tile(rows, whole), rows[np.asarray(picks, dtype=np.int64)]])


def tokenizer_and_template(cfg: Config) -> tuple[Any, AgentTemplate]:
    """The model's tokenizer and the agent template the run trains with."""
    quiet_loading()
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.trust_remote_code, cfg.model.revision)
    return tokenizer, get_template(cfg.data.template, tokenizer)


def check_max_length(cfg: Config) -> None:
    """data.max_length must fit the model's context (read from its config, no weights)."""
    limit = context_length(cfg.model.name, cfg.model.trust_remote_code, cfg.model.revision)
    if limit is not None and cfg.data.max_length > limit:
        raise AgentsftError(f"data.max_length={cfg.data.max_length} is above the model's context "
                            f"({limit} tokens). Fix: --set data.max_length={limit} or less")


def report_skipped(first: list, count: int, what: str) -> None:
    """``count`` things left out, the ``first`` few of them listed."""
    if count:
        say(f"skipped {count} {what}(s):")
        for e in first[:LISTED]:
            say(f"  {e}")
        if count > LISTED:
            say(f"  ... and {count - LISTED} more")

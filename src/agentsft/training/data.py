"""Preparing the data of a run: conversations -> masked token rows, with a held-out
validation split; anything skipped, dropped or truncated is counted and said."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import torch

from agentsft.config import Config, hf_token
from agentsft.data.readers import read_conversations
from agentsft.data.sources import SourceOptions
from agentsft.data.schema import Conversation
from agentsft.data.templates import AgentTemplate, get_template
from agentsft.data.tokenize import Example, encode_conversations
from agentsft.errors import AgentsftError
from agentsft.hub import context_length, is_main, load_tokenizer, quiet_loading, say


def split_validation(convs: list[Conversation], fraction: float, seed: int
                     ) -> tuple[list[Conversation], list[Conversation]]:
    """A seeded hold-out: never the training set itself. None when too few to spare."""
    n_val = round(len(convs) * fraction)
    if fraction <= 0 or n_val < 1 or len(convs) - n_val < 1:
        return convs, []
    order = list(range(len(convs)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_val])
    return ([c for i, c in enumerate(convs) if i not in held],
            [c for i, c in enumerate(convs) if i in held])


def prepare_data(cfg: Config, tokenizer: Any, template: Any, mix: list[dict] | None = None
                 ) -> tuple[list[Example], list[Example], list[Conversation]]:
    """Training rows, validation rows, and the validation conversations (for generation);
    how much of each source was used goes in ``mix``."""
    d = cfg.data
    if not d.train:
        raise AgentsftError("no training data. Fix: pass --data FILE (or set data.train)")
    source = SourceOptions(config=d.config, split=d.split, revision=d.revision, token=hf_token())
    train_convs, val_convs = mixed_sources(cfg, source, mix if mix is not None else [])
    if d.val:
        val_read = read_conversations(d.val, d.format, d.skip_invalid, source)
        report_skipped(val_read.skipped, "invalid validation record")
        val_convs = val_read.conversations
    rows = []
    for name, convs in (("training", train_convs), ("validation", val_convs)):
        enc = encode_conversations(convs, tokenizer, template, d.policy, d.max_length,
                                   d.truncation, d.skip_invalid, progress=is_main())
        report_skipped(enc.skipped, f"{name} example")
        if enc.dropped:
            say(f"dropped {len(enc.dropped)} {name} example(s) longer than data.max_length="
                f"{d.max_length} (first: {enc.dropped[0]}); set data.truncation=truncate to keep them")
        if enc.truncated:
            say(f"truncated {len(enc.truncated)} {name} example(s) to {d.max_length} tokens")
        rows.append(enc.examples)
    train_rows, val_rows = rows
    if not train_rows or not any(ex.n_trained for ex in train_rows):
        raise AgentsftError(f"nothing to train on: no training example has a trained token "
                            f"(data: {', '.join(map(str, d.train))}). Fix: check data.policy, the train "
                            f"flags and data.max_length")
    check_max_length(cfg)
    trained = sum(ex.n_trained for ex in train_rows)
    say(f"data: {len(train_rows)} training examples ({trained} trained tokens), "
        f"{len(val_rows)} validation; template {template.name}, policy {d.policy}")
    return train_rows, val_rows, val_convs


def mixed_sources(cfg: Config, source: SourceOptions, mix: list[dict]
                  ) -> tuple[list[Conversation], list[Conversation]]:
    """Training and held-out conversations from ``data.train``. Each source's validation
    share is held out before its weight applies (a repeated conversation never lands on both
    sides); weight 2 takes each conversation twice, 0.5 a seeded half. The mix is said and
    added to ``mix`` (train() writes it to RUN_DIR/data_mix.json)."""
    d, rng = cfg.data, random.Random(cfg.training.seed)
    train, val = [], []
    for entry in d.train:
        spec = entry if isinstance(entry, dict) else {"path": entry}
        opts = dataclasses.replace(source, **{k: spec[k] for k in ("split", "config", "revision")
                                              if spec.get(k) is not None})
        read = read_conversations(spec["path"], d.format, d.skip_invalid, opts)
        report_skipped(read.skipped, f"invalid record in {spec['path']}")
        kept, held = (read.conversations, []) if d.val else split_validation(
            read.conversations, d.val_fraction, cfg.training.seed)
        used = weighted(kept, float(spec.get("weight", 1)), rng)
        train += used
        val += held
        mix.append({"path": spec["path"], "weight": spec.get("weight", 1), "read": len(read.conversations),
                    "skipped": len(read.skipped), "held_out": len(held), "trained_on": len(used)})
    if len(mix) > 1 or any(m["weight"] != 1 for m in mix):
        say("data mix: " + "; ".join(f"{m['path']} x{m['weight']}: {m['trained_on']} of {m['read'] - m['held_out']}"
                                     for m in mix))
    return train, val


def weighted(convs: list[Conversation], weight: float, rng: random.Random) -> list[Conversation]:
    """``convs`` taken ``weight`` times: whole copies, then a seeded sample for the rest."""
    whole, part = int(weight), weight - int(weight)
    return convs * whole + rng.sample(convs, round(part * len(convs)))


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


def report_skipped(errors: list, what: str) -> None:
    if errors:
        say(f"skipped {len(errors)} {what}(s):")
        for e in errors[:20]:
            say(f"  {e}")
        if len(errors) > 20:
            say(f"  ... and {len(errors) - 20} more")


class Rows(torch.utils.data.Dataset):
    def __init__(self, examples: list[Example]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        ex = self.examples[i]
        return {"input_ids": ex.input_ids, "labels": ex.labels}

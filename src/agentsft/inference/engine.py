"""One generation engine for chat, agents and evaluation.

A :class:`Generator` holds a model, its tokenizer and the agent template it was
trained with. It continues a conversation's prompt, stops at the template's
stop strings (end of turn, or the hand-over to the tools), and can stream text
as it is produced. Training and inference share the template object, so the
prompt is exactly the prefix the model was trained after.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from agentsft.accel.inference import (
    cache_keyword, caches_are_plain, decodes_with_float_keys, growing_cache, layer_tensors,
    left_padded_cache, new_cache, prefix_plan, returned_cache, reused, takes_logits_to_keep,
    tokens_to_read,
)
from agentsft.data.schema import Conversation, Tool
from agentsft.data.templates import AgentTemplate
from agentsft.errors import AgentsftError
from agentsft.hub import say
from agentsft.inference.calls import (
    CallLayout, CallProcessor, CallRules, CallWatch, call_layout, compile_rules, constrain_logits,
)
from agentsft.inference.stops import RowCaps, StopStrings, TextStreamer, first_stop


RULES_KEPT = 64
"""Compiled constraints kept, one per set of offered tools (the least recently used go)."""


@dataclass
class Sampling:
    """How to pick tokens: greedy by default (temperature 0)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise AgentsftError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise AgentsftError(f"temperature must be >= 0 and top_p in (0, 1], got "
                                f"{self.temperature} and {self.top_p}")


@dataclass
class Generation:
    text: str
    """What the model wrote, without the stop string."""
    stop: str | None
    """The stop string that ended it (None: the token limit)."""
    tokens: int = 0


@dataclass
class Generator:
    """A model, its tokenizer and the agent template it was trained with: continues
    prompts (batched, streamed), stopping at the template's stop strings."""

    model: Any
    tokenizer: Any
    template: AgentTemplate
    extra_stops: tuple[str, ...] = field(default_factory=tuple)
    fast: bool = True
    """agentsft's cache reuse and decoding loop (off: ``model.generate`` on plain caches)."""
    constrain: bool = True
    """Tool calls constrained to the offered tools and their schemas (off: free decoding)."""
    _plain: bool | None = field(default=None, init=False, repr=False)
    _rules: dict[tuple[str, str], CallRules] = field(default_factory=dict, init=False, repr=False)
    _said: set[str] = field(default_factory=set, init=False, repr=False)

    @property
    def stops(self) -> tuple[str, ...]:
        stops = tuple(self.template.stop) + self.extra_stops
        eos = self.tokenizer.eos_token
        return stops + ((eos,) if eos and eos not in stops else ())

    @property
    def context(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    def prompt_tokens(self, conv: Conversation) -> int:
        return len(self.tokenizer(self.template.prompt(conv), add_special_tokens=False)["input_ids"])

    def reply(self, conv: Conversation, sampling: Sampling | None = None,
              on_text: Callable[[str], None] | None = None, tool_choice: str = "auto"
              ) -> Generation:
        """The model's next assistant turn for ``conv``. Calls to its tools are constrained
        to their schemas (unless ``constrain`` is off); ``tool_choice``: ``auto`` (the model
        decides whether to call), ``required`` (it calls one of the tools) or a tool's name."""
        return self.complete(self.template.prompt(conv), sampling, on_text,
                             self.call_rules(conv.tools, tool_choice))

    def complete(self, prompt: str, sampling: Sampling | None = None,
                 on_text: Callable[[str], None] | None = None, calls: CallRules | None = None
                 ) -> Generation:
        """Continue ``prompt`` until a stop string, EOS or the token limit (with ``calls``:
        its tool calls constrained)."""
        streamer = TextStreamer(self.tokenizer, on_text, self.stops) if on_text else None
        return self.generate([prompt], sampling, streamer, calls=[calls])[0]

    def call_rules(self, tools: list[Tool] | None, choice: str = "auto") -> CallRules | None:
        """The constraint for a prompt that offers ``tools`` (None: decoding is free, as it
        is without tools, with ``constrain`` off, or where the template's calls cannot be
        constrained, said once). A forced call (``choice`` not ``auto``) is constrained even
        with ``constrain`` off: nothing else can make the model call; where the template's
        calls cannot be constrained, that is an error."""
        if not tools or (not self.constrain and choice == "auto"):
            return None
        layout, grammar_tokenizer = self.call_layout, self.grammar_tokenizer
        if choice != "auto" and (isinstance(layout, str) or isinstance(grammar_tokenizer, str)):
            why = layout if isinstance(layout, str) else grammar_tokenizer
            raise AgentsftError(f"tool_choice {choice!r} needs constrained calls, and {why}. "
                                f"Fix: use tool_choice auto")
        if isinstance(layout, str) or isinstance(grammar_tokenizer, str):
            self.note(f"constrained calls: {layout if isinstance(layout, str) else grammar_tokenizer}"
                      f"; tool calls are decoded freely")
            return None
        key = (json.dumps([t.to_dict() for t in tools], sort_keys=True), choice)
        rules = self._rules.pop(key, None)
        if rules is None:
            rules = compile_rules(grammar_tokenizer, self.tokenizer, layout, tools, choice)
            for line in rules.notes:
                self.note(line)
        self._rules[key] = rules  # the most recent last; a server sees endless tool sets
        while len(self._rules) > RULES_KEPT:
            self._rules.pop(next(iter(self._rules)))
        return rules

    @functools.cached_property
    def call_layout(self) -> CallLayout | str:
        return call_layout(self.template)

    @functools.cached_property
    def grammar_tokenizer(self) -> Any:
        """llguidance's view of the tokenizer, over every logit the model writes (or why
        there is none). Built once: about 0.6 s for the default model's."""
        import llguidance.hf
        vocab = max(len(self.tokenizer), self.model.config.get_text_config().vocab_size)
        try:
            return llguidance.hf.from_tokenizer(self.tokenizer, n_vocab=vocab)
        except ValueError as e:
            return f"llguidance cannot read this tokenizer ({e})"

    def note(self, line: str) -> None:
        if line not in self._said:
            self._said.add(line)
            say(line)

    def complete_batch(self, prompts: list[str], sampling: Sampling | None = None,
                       batch_size: int = 8, progress: str | None = None,
                       limits: list[int] | None = None, share_prefixes: bool = True,
                       tools: list[list[Tool] | None] | None = None) -> list[Generation]:
        """Continue every prompt, ``batch_size`` at a time (left-padded), in the order
        given; ``progress`` labels a progress bar. ``limits`` caps each prompt's new tokens
        below ``sampling.max_new_tokens``; each output is cut at its own cap, so results do
        not depend on how prompts were batched.

        Where prompts are prefixes of one another (the steps of one conversation, in
        stepwise evaluation) and that is at least a quarter of their tokens, each longest
        prompt is read once and the others start from its key/value cache (unless
        ``share_prefixes`` is False). ``tools``: per prompt, the tools it offers, whose
        calls are constrained (see :meth:`reply`)."""
        from tqdm.auto import tqdm
        s = sampling or Sampling()
        rules = [self.call_rules(t) for t in tools] if tools else [None] * len(prompts)
        caps = [min(s.max_new_tokens, n) for n in limits] if limits else [s.max_new_tokens] * len(prompts)
        rows = [self.encode(p) for p in prompts]
        plan = prefix_plan(rows) if share_prefixes and self.caches_are_plain() else None
        if plan is not None and tokens_to_read(rows, plan) > 0.75 * sum(map(len, rows)):
            plan = None  # too little shared to be worth reading prompts one by one
        if plan is not None:
            order = sorted(range(len(rows)), key=lambda i: (rows[plan[i][0]], len(rows[i])))
        else:
            order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        out: list[Generation | None] = [None] * len(prompts)
        read: dict[int, Any] = {}  # donor -> its key/value cache, while batches need it
        last = None  # the donor read last: the next one starts from it where they agree
        with tqdm(total=len(prompts), desc=progress, unit="prompt", disable=progress is None,
                  dynamic_ncols=True) as bar:
            for at in range(0, len(order), batch_size):
                chunk = order[at:at + batch_size]
                batch = Sampling(max(caps[i] for i in chunk), s.temperature, s.top_p)
                prefixes = None
                if plan is not None:
                    read = {d: read[d] for d in read if d in {plan[i][0] for i in chunk}}
                    for d in sorted({plan[i][0] for i in chunk} - read.keys(), key=rows.__getitem__):
                        read[d] = self.read_prompt(rows[d], last)
                        last = (rows[d], read[d])
                    prefixes = [(read[plan[i][0]], plan[i][1]) for i in chunk]
                gens = self.generate_rows([rows[i] for i in chunk], batch,
                                          caps=[caps[i] for i in chunk], prefixes=prefixes,
                                          calls=[rules[i] for i in chunk])
                for i, gen in zip(chunk, gens):
                    out[i] = gen
                bar.update(len(chunk))
        return out  # type: ignore[return-value]

    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def generate(self, prompts: list[str], sampling: Sampling | None = None,
                 streamer: BaseStreamer | None = None, caps: list[int] | None = None,
                 calls: list[CallRules | None] | None = None) -> list[Generation]:
        """One batch of prompts through ``model.generate`` (see :meth:`generate_rows`)."""
        return self.generate_rows([self.encode(p) for p in prompts], sampling, streamer, caps,
                                  calls=calls)

    @torch.no_grad()
    def read_prompt(self, row: list[int], after: tuple[list[int], Any] | None = None
                    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of every layer for ``row``, each (1, kv_heads, len, head_dim);
        ``after``: another row and its cache, whose common start is taken from it."""
        start = reused(after[0], row) if after is not None else 0
        cache = new_cache([(k[:, :, :start], v[:, :, :start]) for k, v in after[1]]
                              if start else None)
        # Only the cache is wanted: the output head over every prompt position (49,152 x 576
        # per token for the default model) took 0.21 of 0.90 s for a 701-token prompt.
        with self.eval_mode():
            self.model(input_ids=torch.tensor([row[start:]], device=self.model.device),
                       use_cache=True, **{self.cache_keyword: cache}, **self.head_on_last())
        return layer_tensors(cache)

    def head_on_last(self) -> dict[str, int]:
        """Forward arguments that apply the output head to the last position only, where
        the model can (our own forward passes need no other logits)."""
        return {"logits_to_keep": 1} if takes_logits_to_keep(self.model) else {}

    @functools.cached_property
    def cache_keyword(self) -> str:
        return cache_keyword(self.model)

    def caches_are_plain(self) -> bool:
        """Whether a prompt's cache is the start of a longer one's (asked once)."""
        if self._plain is None:
            self._plain = self.fast and caches_are_plain(self.model, self.tokenizer.eos_token_id or 0)
        return self._plain

    def decodes_with_float_keys(self) -> bool:
        return decodes_with_float_keys(self.model)

    @contextlib.contextmanager
    def eval_mode(self) -> Iterator[None]:
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    def generate_rows(self, rows: list[list[int]], sampling: Sampling | None = None,
                      streamer: BaseStreamer | None = None, caps: list[int] | None = None,
                      prefixes: list[tuple[Any, int]] | None = None,
                      calls: list[CallRules | None] | None = None) -> list[Generation]:
        """One batch of token rows through ``model.generate``: left padding, greedy unless
        sampling says otherwise, each text cut at its first stop string (and at its cap of
        new tokens). ``prefixes``: per row, (cache, n): a prompt's cache (:meth:`read_prompt`)
        whose first n positions are the row's first n tokens; the batch's cache covers as
        many positions as every row has there, and the rest is read as usual. ``calls``:
        per row, the constraint on its tool calls (None: free)."""
        s = sampling or Sampling()
        watches = [CallWatch(r, self.tokenizer) if r is not None else None for r in calls or ()]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        device = self.model.device
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=s.max_new_tokens, do_sample=s.temperature > 0, pad_token_id=pad,
            eos_token_id=self.tokenizer.eos_token_id, attention_mask=mask, streamer=streamer)
        if s.temperature > 0:
            kwargs.update(temperature=s.temperature, top_p=s.top_p)
        else:  # greedy: no sampling knobs, so generate() does not warn about them
            kwargs.update(temperature=None, top_p=None, top_k=None)
        float_keys = self.decodes_with_float_keys()
        if prefixes is not None:
            starts = [width - len(r) for r in rows]
            cached = min(start + n for start, (_, n) in zip(starts, prefixes))
            if cached > max(starts):
                kwargs[self.cache_keyword] = left_padded_cache(
                    [c for c, _ in prefixes], starts, cached, room=width - cached + s.max_new_tokens,
                    keys_dtype=torch.float32 if float_keys else None)
        if self.cache_keyword not in kwargs and float_keys and self.caches_are_plain():
            kwargs[self.cache_keyword] = growing_cache(
                self.model.config.get_text_config().num_hidden_layers, s.max_new_tokens,
                torch.float32)
        caps = caps or [s.max_new_tokens] * len(rows)
        if len(rows) > 1 and s.temperature == 0 and streamer is None and self.caches_are_plain():
            with self.eval_mode():
                news = self.greedy_batch(ids, mask, kwargs.get(self.cache_keyword), caps,
                                         watches if any(watches) else None)
            return [self.cut(new) for new in news]
        criteria: list[StoppingCriteria] = [StopStrings(self.tokenizer, self.stops, width)]
        if min(caps) < s.max_new_tokens:  # a row at its cap is done, as at a stop
            criteria.append(RowCaps(width, caps))
        kwargs["stopping_criteria"] = StoppingCriteriaList(criteria)
        if any(watches):
            kwargs["logits_processor"] = LogitsProcessorList([CallProcessor(watches, width)])
        with torch.no_grad(), self.eval_mode():
            out = self.model.generate(ids, **kwargs)
        return [self.cut(row[width:width + cap].tolist()) for row, cap in zip(out, caps)]

    @torch.no_grad()
    def greedy_batch(self, ids: torch.Tensor, mask: torch.Tensor, cache: Any,
                     caps: list[int], watches: list[CallWatch | None] | None = None
                     ) -> list[list[int]]:
        """Greedy decoding of a left-padded batch in which a row leaves as soon as it is
        done (end of sequence, a stop string, its cap): later steps compute only the rows
        still writing. ``model.generate`` computes every row until the last one is done,
        and an eval batch's replies vary 3-5x in length. Returns each row's new tokens."""
        eos = self.tokenizer.eos_token_id
        checker = StopStrings(self.tokenizer, self.stops, 0)
        positions = (mask.cumsum(-1) - 1).masked_fill_(mask == 0, 1)  # as generate() sets them
        head = self.head_on_last()
        past = cache.get_seq_length() if cache is not None else 0
        feed, where = ids[:, past:], positions[:, past:]
        going = list(range(len(ids)))  # the rows still writing, by their index in ids
        news: list[list[int]] = [[] for _ in going]
        while going:
            out = self.model(input_ids=feed, attention_mask=mask, position_ids=where,
                             use_cache=True, **{self.cache_keyword: cache}, **head)
            cache = returned_cache(out)
            logits = out.logits[:, -1].float()
            if watches is not None:
                constrain_logits(logits, [watches[row] for row in going])
            picked = logits.argmax(-1)
            for row, token in zip(going, picked.tolist()):
                news[row].append(token)
                if watches is not None and watches[row] is not None:
                    watches[row].advance(token)
            hits = checker.found([news[row][-checker.tail:] for row in going])
            stopped = [news[row][-1] == eos or len(news[row]) >= caps[row] or hit
                       for row, hit in zip(going, hits)]
            if any(stopped):
                keep = [i for i, done in enumerate(stopped) if not done]
                going = [going[i] for i in keep]
                if not going:
                    break
                index = torch.tensor(keep, device=ids.device)
                cache.batch_select_indices(index)
                picked, mask, where = picked[index], mask[index], where[index]
            feed = picked[:, None]
            where = where[:, -1:] + 1
            mask = torch.cat([mask, mask.new_ones(len(going), 1)], 1)
        return news

    def cut(self, ids: list[int]) -> Generation:
        """The text up to the first stop string (rows that finished early are padded to
        the longest after their stop, so the padding is cut with it)."""
        n = len(ids)
        while n > 1 and ids[n - 1] == self.tokenizer.pad_token_id:
            n -= 1
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        found = first_stop(text, self.stops)
        if found is not None:
            return Generation(text[:found[0]], found[1], n)
        return Generation(text, None, n)

"""Continuous batching: many requests share one model, each joining the running batch when
it arrives and leaving it when done.

A :class:`Batcher` owns the model on one thread. A :class:`Job` (token row, sampling,
stop strings, tool-call constraint, adapter) is submitted from any thread; the batcher
reads its prompt alone (starting from the cache of an earlier prompt where they share a
long start: an agent resends its whole conversation every turn), picks its first token,
and merges its keys and values into the batch's cache (left padding). Every step then
feeds each running row's last token in one forward pass. A row leaves at its stop string,
end of sequence or token cap, or when its job is cancelled (a client that went away); the
others go on. Text reaches the job's callback as it is written, stop strings held back.

Merging caches by hand needs a model whose cache is plain (every position of every layer:
:func:`~agentsft.accel.inference.caches_are_plain`). Any other model is served one request
at a time on its own cache, said in one line.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from agentsft.accel.inference import (
    GrowingLayer, cache_of, layer_tensors, new_cache, returned_cache, reused,
)
from agentsft.hub import say
from agentsft.inference.calls import CallRules, CallWatch, constrain_logits
from agentsft.inference.engine import Generation, Generator, Sampling
from agentsft.inference.stops import TextStreamer, first_stop

ROOM = 64
"""Positions a batch's cache keeps to spare, so that most steps write in place."""
PROMPTS_KEPT = 4
"""Recent prompts whose caches are kept for the next request that starts alike."""


@dataclass
class Job:
    """One request: continue ``row`` (prompt tokens) under ``sampling``; ``on_text`` gets
    the text as it is written, ``on_done`` the whole :class:`Generation` and why it ended
    (``stop`` or ``length``), or ``on_error`` a message. Callbacks run on the batcher's
    thread and must return quickly."""

    generator: Generator
    """The served model's generator: tokenizer, template stops and rules."""
    row: list[int]
    sampling: Sampling
    on_text: Callable[[str], None] | None = None
    on_done: Callable[[Generation, str], None] | None = None
    on_error: Callable[[str], None] | None = None
    stops: tuple[str, ...] = ()
    """Stop strings besides the template's."""
    rules: CallRules | None = None
    adapter: str | None = None
    """The PEFT adapter that answers (several adapters of one base; None: the model)."""
    seed: int | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    new: list[int] = field(default_factory=list, init=False)
    watch: CallWatch | None = field(default=None, init=False)
    streamer: TextStreamer | None = field(default=None, init=False)
    rng: torch.Generator | None = field(default=None, init=False)

    def cancel(self) -> None:
        """Leave the batch at the next step (its callbacks are not called again)."""
        self.cancelled.set()

    @property
    def all_stops(self) -> tuple[str, ...]:
        return self.generator.stops + tuple(s for s in self.stops if s)


def pick(logits: torch.Tensor, job: Job) -> int:
    """The job's next token from its row of logits (constraint already applied)."""
    s = job.sampling
    if s.temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / s.temperature, -1)
    if s.top_p < 1:
        ordered, order = probs.sort(descending=True)
        drop = ordered.cumsum(-1) - ordered > s.top_p  # keep the smallest set reaching top_p
        ordered[drop] = 0
        probs = torch.zeros_like(probs).scatter_(-1, order, ordered)
    return int(torch.multinomial(probs, 1, generator=job.rng))


@dataclass
class Rows:
    """The running batch: its jobs, their left-padded cache, attention mask (over the
    cached positions), next positions and last tokens."""

    jobs: list[Job]
    cache: Any
    mask: torch.Tensor
    positions: torch.Tensor
    last: torch.Tensor

    def keep(self, index: list[int]) -> None:
        at = torch.tensor(index, device=self.mask.device)
        self.jobs = [self.jobs[i] for i in index]
        self.cache.batch_select_indices(at)
        self.mask, self.positions, self.last = self.mask[at], self.positions[at], self.last[at]
        lead = int((self.mask.cumsum(-1) == 0).sum(-1).min())  # padding every row has
        if lead >= ROOM and isinstance(self.cache.layers[0], GrowingLayer):
            self.cache = cache_of([GrowingLayer(layer.buffers[0][:, :, lead:],
                                                layer.buffers[1][:, :, lead:], layer.length - lead)
                                   for layer in self.cache.layers])
            self.mask = self.mask[:, lead:]


def joined(rows: Rows | None, layers: list[tuple[torch.Tensor, torch.Tensor]], length: int,
           keys_dtype: torch.dtype | None) -> tuple[Any, torch.Tensor]:
    """The batch's cache and mask with one more row, whose cache (``length`` positions) is
    ``layers``: rows are left-padded to the longer of the batch and the newcomer."""
    width = max(length, rows.mask.shape[1] if rows is not None else 0)
    out = []
    for i, (k, v) in enumerate(layers):
        old = (rows.cache.layers[i].keys, rows.cache.layers[i].values) if rows is not None else None
        b = 1 + (old[0].shape[0] if old is not None else 0)
        pair = []
        for j, new in enumerate((k, v)):
            dtype = (keys_dtype or new.dtype) if j == 0 else new.dtype
            buf = new.new_zeros(b, new.shape[1], width + ROOM, new.shape[3], dtype=dtype)
            if old is not None:
                buf[:-1, :, width - old[j].shape[2]:width] = old[j]
            buf[-1:, :, width - length:width] = new[:, :, :length]
            pair.append(buf)
        out.append(GrowingLayer(pair[0], pair[1], width))
    mask = torch.zeros(1, width, dtype=torch.long, device=layers[0][0].device)
    mask[0, width - length:] = 1
    if rows is not None:
        old_mask = rows.mask.new_zeros(rows.mask.shape[0], width)
        old_mask[:, width - rows.mask.shape[1]:] = rows.mask
        mask = torch.cat([old_mask, mask])
    return cache_of(out), mask


class Batcher:
    """Answers :class:`Job` s for one model, batched continuously (see the module)."""

    def __init__(self, generator: Generator, max_rows: int = 16, adapters: bool = False):
        """``generator``: the model (any served generator over it); ``max_rows``: the most
        requests decoding at once (others wait); ``adapters``: the model is a PEFT model with
        several adapters, each row naming its own (``Job.adapter``)."""
        self.model = generator.model
        self.plain = generator.caches_are_plain()
        self.float_keys = generator.decodes_with_float_keys()
        self.cache_keyword, self.head = generator.cache_keyword, generator.head_on_last()
        self.max_rows = max_rows if self.plain else 1
        self.adapters = adapters
        self.waiting: queue.Queue[Job | None] = queue.Queue()
        self.rows: Rows | None = None
        self.prompts: list[tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]] = []
        self.closing = False
        self.steps = 0
        if not self.plain:
            say("serve: this model's cache cannot be shared between requests (sliding windows, "
                "other state, or --fast-path off); requests are answered one at a time")
        self.thread = threading.Thread(target=self.loop, daemon=True, name="agentsft-batcher")
        self.thread.start()

    def submit(self, job: Job) -> Job:
        if self.closing:
            raise RuntimeError("the batcher is closed")
        job.watch = CallWatch(job.rules, job.generator.tokenizer) if job.rules is not None else None
        job.rng = torch.Generator().manual_seed(job.seed if job.seed is not None
                                                else int(torch.randint(2**62, ())))
        self.waiting.put(job)
        return job

    def close(self, timeout: float | None = None) -> None:
        """Stop taking jobs; those running are cancelled, then the thread ends."""
        self.closing = True
        self.waiting.put(None)
        self.thread.join(timeout)

    @property
    def running(self) -> int:
        return len(self.rows.jobs) if self.rows is not None else 0

    def loop(self) -> None:
        self.model.eval()
        while True:
            try:
                if not self.admit():
                    break
                if self.rows is not None:
                    self.step()
            except Exception as e:  # a bug: every job hears of it, the loop goes on
                say(f"serve: generation failed ({type(e).__name__}: {e})")
                for job in self.rows.jobs if self.rows is not None else []:
                    if job.on_error is not None:
                        job.on_error(f"generation failed ({type(e).__name__})")
                self.rows = None

    def admit(self) -> bool:
        """Take waiting jobs while there is room (blocking while nothing runs); False once
        closed."""
        while self.running < self.max_rows:
            try:
                job = self.waiting.get(block=self.rows is None)
            except queue.Empty:
                return True
            if job is None or self.closing:
                for j in self.rows.jobs if self.rows is not None else []:
                    j.cancel()
                self.rows = None
                return False
            if job.cancelled.is_set():
                continue
            try:
                self.start(job)
            except Exception as e:  # this job alone fails (a bug); the batch goes on
                say(f"serve: reading a prompt failed ({type(e).__name__}: {e})")
                if job.on_error is not None:
                    job.on_error(f"generation failed ({type(e).__name__})")
        return True

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, cache: Any, adapters: list[str | None], **kw: Any) -> Any:
        if self.adapters:
            kw["adapter_names"] = [a or "__base__" for a in adapters]
        return self.model(input_ids=ids, use_cache=True, **{self.cache_keyword: cache},
                          **self.head, **kw)

    def start(self, job: Job) -> None:
        """Read the job's prompt, pick its first token and add it to the batch."""
        row, device = job.row, self.model.device
        done = 0
        cache = new_cache()
        if self.plain:
            best = max(self.prompts, key=lambda p: reused(p[0], row), default=None)
            done = reused(best[0], row) if best is not None else 0
            if done:
                cache = new_cache([(k[:, :, :done], v[:, :, :done]) for k, v in best[1]])
        out = self.forward(torch.tensor([row[done:]], device=device), cache, [job.adapter])
        cache = returned_cache(out)
        if self.plain and not self.adapters:  # an adapter's cache differs from the base's
            self.prompts = [p for p in self.prompts if p[0] != row][-(PROMPTS_KEPT - 1):]
            self.prompts.append((row, layer_tensors(cache)))
        token = self.choose(out.logits[:, -1].float(), [job])[0]
        if self.record(job, token):
            return
        position = torch.tensor([len(row)], device=device)
        last = torch.tensor([token], device=device)
        if not self.plain:  # one at a time, on the model's own cache
            mask = torch.ones(1, len(row), dtype=torch.long, device=device)
            self.rows = Rows([job], cache, mask, position, last)
            return
        merged, mask = joined(self.rows, layer_tensors(cache), len(row),
                              torch.float32 if self.float_keys else None)
        if self.rows is None:
            self.rows = Rows([job], merged, mask, position, last)
        else:
            r = self.rows
            self.rows = Rows(r.jobs + [job], merged, mask, torch.cat([r.positions, position]),
                             torch.cat([r.last, last]))

    def choose(self, logits: torch.Tensor, jobs: list[Job]) -> list[int]:
        constrain_logits(logits, [j.watch for j in jobs])
        return [pick(row, job) for row, job in zip(logits, jobs)]

    def step(self) -> None:
        """One token for every running row; rows that finish or were cancelled leave."""
        r = self.rows
        alive = [i for i, j in enumerate(r.jobs) if not j.cancelled.is_set()]
        if len(alive) < len(r.jobs):
            if not alive:
                self.rows = None
                return
            r.keep(alive)
        r.mask = torch.cat([r.mask, r.mask.new_ones(len(r.jobs), 1)], 1)
        out = self.forward(r.last[:, None], r.cache, [j.adapter for j in r.jobs],
                           attention_mask=r.mask, position_ids=r.positions[:, None])
        r.cache = returned_cache(out)
        tokens = self.choose(out.logits[:, -1].float(), r.jobs)
        self.steps += 1
        r.positions = r.positions + 1
        r.last = torch.tensor(tokens, device=r.last.device)
        going = [i for i, (job, t) in enumerate(zip(r.jobs, tokens)) if not self.record(job, t)]
        if not going:
            self.rows = None
        elif len(going) < len(r.jobs):
            r.keep(going)

    def record(self, job: Job, token: int) -> bool:
        """Take the job's new token; True when the job is done (and told so)."""
        tok = job.generator.tokenizer
        job.new.append(token)
        if job.watch is not None:
            job.watch.advance(token)
        if job.streamer is None:
            job.streamer = TextStreamer(tok, job.on_text or (lambda _: None), job.all_stops)
            job.streamer.prompt_seen = True
        job.streamer.ids.append(token)
        job.streamer.flush(final=False)
        ended = job.streamer.done or token == tok.eos_token_id
        if not ended and len(job.new) < job.sampling.max_new_tokens:
            return False
        if job.cancelled.is_set():
            return True
        job.streamer.flush(final=True)
        text = tok.decode(job.new, skip_special_tokens=False)
        found = first_stop(text, job.all_stops)
        gen = Generation(text[:found[0]] if found else text, found[1] if found else None,
                         len(job.new))
        if job.on_done is not None:
            job.on_done(gen, "stop" if found else "length")
        return True

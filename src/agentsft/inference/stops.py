"""Where a generation ends: stop strings (end of turn, or the hand-over to the tools),
checked on each row's last tokens, and a streamer that never shows a stop string."""

from __future__ import annotations

from typing import Any, Callable

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer


class TextStreamer(BaseStreamer):
    """Feeds decoded text to ``on_text`` as tokens arrive, holding back anything that could
    still turn into a stop string (those are not shown)."""

    def __init__(self, tokenizer: Any, on_text: Callable[[str], None], stops: tuple[str, ...]):
        self.tokenizer, self.on_text, self.stops = tokenizer, on_text, stops
        self.ids: list[int] = []
        self.shown = 0
        self.prompt_seen = False
        self.done = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        self.flush(final=False)

    def end(self) -> None:
        self.flush(final=True)

    def flush(self, final: bool) -> None:
        if self.done:
            return
        text = self.tokenizer.decode(self.ids, skip_special_tokens=False)
        cut = first_stop(text, self.stops)
        if cut is not None:
            text, self.done = text[:cut[0]], True
        elif not final:
            if text.endswith("\ufffd"):  # half of a multi-byte character
                return
            text = text[:len(text) - pending_stop_prefix(text, self.stops)]
        if len(text) > self.shown:
            self.on_text(text[self.shown:])
            self.shown = len(text)


def first_stop(text: str, stops: tuple[str, ...]) -> tuple[int, str] | None:
    """Position and value of the earliest stop string in ``text``."""
    found = [(text.find(s), s) for s in stops if s and s in text]
    return min(found) if found else None


def pending_stop_prefix(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of ``text`` that begins some stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if s.startswith(text[-n:]):
                best = max(best, n)
                break
    return best


class StopStrings(StoppingCriteria):
    """Each row stops once its new text holds a stop string. Only the last few new tokens
    are decoded each step (a stop string spans at most one token per character, plus the
    bytes of a split character); transformers' own stop-string criterion scans the whole
    vocabulary first, 0.3 s for the default model on every generate() call."""

    def __init__(self, tokenizer: Any, stops: tuple[str, ...], prompt_width: int):
        self.tokenizer, self.stops, self.width = tokenizer, stops, prompt_width
        self.tail = max((len(s) for s in stops), default=0) + 4

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        tails = input_ids[:, max(self.width, input_ids.shape[1] - self.tail):]
        return torch.tensor(self.found(tails), device=input_ids.device)

    def found(self, tails: Any) -> list[bool]:
        """Per row of last tokens (at least ``tail`` of them, where there are), whether
        they hold a stop string."""
        return [any(s in t for s in self.stops) for t in self.tokenizer.batch_decode(tails)]


class RowCaps(StoppingCriteria):
    """Each row of a batch stops at its own number of new tokens."""

    def __init__(self, prompt_width: int, caps: list[int]):
        self.prompt_width, self.caps = prompt_width, torch.tensor(caps)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return (input_ids.shape[1] - self.prompt_width) >= self.caps.to(input_ids.device)

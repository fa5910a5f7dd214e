"""What the loss needs from a batch: the logits at the positions that predict a trained token.

Used by training (the loss) and by evaluation (perplexity of the gold assistant tokens).
"""

from __future__ import annotations

from typing import Any

import torch

from agentsft.data.tokenize import IGNORE_INDEX


def forward_takes(model: Any, name: str) -> bool:
    """Whether the model's own forward (under its DDP and PEFT wrappers) takes ``name``."""
    import inspect
    for _ in range(3):  # accelerate / DDP and PEFT wrappers
        model = getattr(model, "module", model)
        model = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(model.forward).parameters


def takes_logits_to_keep(model: Any) -> bool:
    """Whether the model's forward can apply its output head to chosen positions only."""
    return forward_takes(model, "logits_to_keep")


def trained_logits(model: Any, batch: dict[str, Any], labels: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (n, vocab) at the n positions whose next token is trained, those n target
    tokens, and the (batch, seq) mask of the positions. In agent data most tokens are
    prompt (about 9% are trained in examples/tools.jsonl), and the output head with a
    vocabulary-wide softmax at every position would be a large share of the work; where
    the model cannot skip positions, its full logits are sliced (same values)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX  # position p predicts token p + 1
    targets = labels[:, 1:][keep[:, :-1]]
    if takes_logits_to_keep(model):
        logits = model(**batch, logits_to_keep=keep).logits
    else:
        logits = model(**batch).logits[keep]
    return logits.reshape(-1, logits.shape[-1]), targets, keep

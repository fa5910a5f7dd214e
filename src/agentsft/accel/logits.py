"""What the loss needs from a batch: the logits at the positions that predict a trained token.

Used by training (the loss) and by evaluation (perplexity of the gold assistant tokens).
On a CUDA GPU with liger-kernel installed, training's loss can skip the logits altogether:
:class:`FusedLoss` takes the hidden states at those positions and Liger's fused linear
cross-entropy computes the output layer and the loss in chunks, never holding the
(positions, vocabulary) logits. Used only where :func:`head_misfit` finds the model's
logits to be its output layer's product and :func:`fused_misfit` finds the kernel equal to
the plain loss on the device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from agentsft.accel.compare import close
from agentsft.data.tokenize import IGNORE_INDEX


def own_model(model: Any) -> Any:
    """The transformers model under its DDP and PEFT wrappers."""
    for _ in range(3):  # accelerate / DDP and PEFT wrappers
        model = getattr(model, "module", model)
        model = model.get_base_model() if hasattr(model, "get_base_model") else model
    return model


def forward_takes(model: Any, name: str) -> bool:
    """Whether the model's own forward (under its DDP and PEFT wrappers) takes ``name``."""
    import inspect
    return name in inspect.signature(own_model(model).forward).parameters


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
    keep, targets = trained_positions(labels)
    if takes_logits_to_keep(model):
        logits = model(**batch, logits_to_keep=keep).logits
    else:
        logits = model(**batch).logits[keep]
    return logits.reshape(-1, logits.shape[-1]), targets, keep


def trained_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (batch, seq) mask of the positions whose next token is trained, and those tokens."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX  # position p predicts token p + 1
    return keep, labels[:, 1:][keep[:, :-1]]


@contextlib.contextmanager
def head_skipped(head: torch.nn.Module) -> Iterator[None]:
    """The model returns the hidden states its output layer would read, as its "logits"."""
    own = head.__dict__.get("forward")  # a forward set on the instance (hooks), kept
    head.forward = lambda x: x
    try:
        yield
    finally:
        if own is None:
            del head.forward
        else:
            head.forward = own


def head_misfit(model: Any) -> str | None:
    """Why the loss cannot take the output layer's input in place of the logits (None: it
    can): the layer must be a plain linear one (not a LoRA-wrapped or quantized one), the
    model must take ``logits_to_keep``, and its logits must be that layer's product, compared
    on a short random row with the layer's weight scaled up. A scale after the layer
    (Granite's ``logits_scaling``) passes: applied to the layer's input instead, it gives
    the same logits; a soft-cap (Gemma 2's ``final_logit_softcapping``) does not."""
    head = own_model(model).get_output_embeddings()
    if type(head) is not torch.nn.Linear:
        return f"its output layer is a {type(head).__name__}, not a plain linear layer"
    if not takes_logits_to_keep(model):
        return "its forward cannot keep chosen positions (logits_to_keep)"
    ids = torch.randint(0, head.weight.shape[0], (1, 6), generator=torch.Generator().manual_seed(0))
    args = {"input_ids": ids.to(head.weight.device), "use_cache": False,
            "logits_to_keep": torch.ones(1, 6, dtype=torch.bool, device=head.weight.device)}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            head.weight.mul_(64)  # large logits, so that a soft cap bends them (exact: 2^6)
            with head_skipped(head):
                hidden = model(**args).logits
            logits = model(**args).logits.float()
            want = F.linear(hidden.to(head.weight.dtype), head.weight, head.bias).float()
    finally:
        with torch.no_grad():
            head.weight.div_(64)
        model.train(was_training)
    if hidden.shape[-1] != head.weight.shape[1] or not close(logits, want, 1e-3):
        return "the model bends its logits after its output layer (a soft-cap)"
    return None


def fused_misfit(dtype: torch.dtype, device: str) -> str | None:
    """Why Liger's fused linear cross-entropy cannot stand in for the plain loss here (None:
    it can): not installed, or its loss or gradients (of the hidden states and the output
    layer's weight) differ from ``cross_entropy(linear(h, W).float())`` summed, in
    ``dtype`` on ``device``, on random values."""
    try:
        liger = liger_linear_ce()
    except ImportError:
        return "liger-kernel is not installed (pip install liger-kernel: less memory)"
    gen = torch.Generator().manual_seed(0)
    h, w = (torch.randn(n, 64, generator=gen).to(device, dtype).requires_grad_()
            for n in (40, 1000))
    targets = torch.randint(0, 1000, (40,), generator=gen).to(device)
    try:
        got = liger(w, h, targets)
        got_grads = torch.autograd.grad(got, (h, w))
    except (RuntimeError, ValueError, TypeError, AssertionError) as e:
        return f"its kernel failed on {dtype} ({str(e).strip().splitlines()[0][:120]})"
    want = F.cross_entropy(F.linear(h, w).float(), targets, reduction="sum")
    want_grads = torch.autograd.grad(want, (h, w))
    if not all(close(a, b, 0.02) for a, b in zip((got, *got_grads), (want, *want_grads))):
        return f"its loss or gradients differed from the plain loss's on {dtype}"
    return None


def liger_linear_ce() -> Any:
    """Liger's fused linear cross-entropy, summed, as training uses it and
    :func:`fused_misfit` checks it (ImportError without liger-kernel)."""
    import inspect

    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    # A trained output layer's gradient summed over chunks in float32, not bf16.
    wide = ({"accum_dtype": torch.float32} if "accum_dtype" in
            inspect.signature(LigerFusedLinearCrossEntropyLoss).parameters else {})
    return LigerFusedLinearCrossEntropyLoss(reduction="sum", **wide)


class FusedLoss:
    """The summed cross-entropy of the trained tokens from the output layer's input, in the
    compute ``dtype``; call as ``loss, n = fused(model, batch, labels)``. ``linear_ce(weight,
    hidden, targets, bias)`` computes the layer and the summed loss: Liger's fused kernel
    unless given."""

    def __init__(self, dtype: torch.dtype, linear_ce: Any = None):
        self.loss, self.dtype = linear_ce or liger_linear_ce(), dtype

    def __call__(self, model: Any, batch: dict[str, Any], labels: torch.Tensor
                 ) -> tuple[torch.Tensor, int]:
        keep, targets = trained_positions(labels)
        head = own_model(model).get_output_embeddings()
        with head_skipped(head):
            hidden = model(**batch, logits_to_keep=keep).logits
        if not targets.numel():  # every weight stays in the graph, as DDP expects
            return hidden.sum() * 0 + head.weight.sum() * 0, 0
        weight = head.weight.to(self.dtype)
        bias = None if head.bias is None else head.bias.to(self.dtype)
        return self.loss(weight, hidden.to(self.dtype), targets, bias), targets.numel()

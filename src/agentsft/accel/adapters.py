"""LoRA layers while training under autocast: the adapter's scale and its sum with the
frozen layer's output go into one matrix product.

PEFT computes ``base(x) + lora_B(lora_A(x)) * scaling``: with the default model's LoRA on
every linear layer, the scaling and the sum are two passes over each layer's output,
forward and backward (about 1.2 s of element-wise work in a profiled 9 s CPU step on tool
data; the step itself became 3% faster, 8.73 -> 8.49 s, medians of 3). Here the sum is
``base(x).addmm_(lora_A(x), lora_B.weight.T, alpha=scaling)``: the matrix product adds
into the frozen layer's output in place. PEFT also casts each adapter's input to the adapters'
float32 weights, which autocast undoes at once (two copies of the activations per layer);
that cast is skipped too.

The projections that read one input (q/k/v, gate/up) compute their rank-16 A products as
one product (:class:`Siblings`): a LoRA step of the default model took 0.967x the time (2,999
tokens, 10 pairs interleaved in one process; another run of 8 pairs: 0.974x).

Only plain LoRA layers with one active, unmerged adapter and no bias on B take this path;
every other case (DoRA and other variants, several adapters, adapters switched off, an
input whose dtype differs from the weights' without autocast) runs PEFT's own forward.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import types
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


def fused_forward(layer: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """A PEFT ``lora.Linear`` forward with the scaled adapter added inside its product."""
    active = layer.active_adapters
    if (args or kwargs or layer.disable_adapters or layer.merged or len(active) != 1
            or active[0] not in layer.lora_A or active[0] in layer.lora_variant
            or layer.lora_B[active[0]].bias is not None
            or not (autocasting(x) or one_dtype(layer, active[0], x))):
        return type(layer).forward(layer, x, *args, **kwargs)
    name = active[0]
    flat = x.reshape(-1, x.shape[-1])
    result = layer.base_layer(flat)
    siblings = layer.__dict__.get("lora_siblings")
    low = siblings.low(layer, name, x, flat) if siblings is not None else None
    if low is None:
        low = layer.lora_A[name](layer.lora_dropout[name](flat))
    up = layer.lora_B[name].weight.to(result.dtype).t()  # in-place products skip autocast
    if type(layer.base_layer) is torch.nn.Linear:  # its output is not needed for its backward
        result.addmm_(low, up, alpha=layer.scaling[name])
    else:
        result = torch.addmm(result, low, up, alpha=layer.scaling[name])
    return result.view(*x.shape[:-1], result.shape[-1])


SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
"""Projections that Llama-family models apply to one input. Their LoRA A products are
one matrix product when they do (checked at every call: otherwise each computes its own)."""


class Siblings:
    """LoRA layers of one module that read the same input: the first of them to run
    computes all their A products as one matrix product (the input read once, rank 48
    instead of three of 16), and each takes its columns."""

    def __init__(self, layers: list[Any]):
        self.layers = layers
        self.source: tuple[torch.Tensor, int] | None = None  # the input and its version
        self.lows: dict[int, torch.Tensor] = {}

    def low(self, layer: Any, name: str, x: torch.Tensor, flat: torch.Tensor
            ) -> torch.Tensor | None:
        """``layer``'s A product of ``x`` (``flat``: its rows); None where the siblings
        cannot share it (adapter ``name`` missing in one, or dropout on their input)."""
        fresh = (self.source is not None and self.source[0] is x
                 and self.source[1] == x._version and id(layer) in self.lows)
        if not fresh:
            if not all(name in m.lora_A and type(m.lora_dropout[name]) is torch.nn.Identity
                       for m in self.layers):
                return None
            weights = [m.lora_A[name].weight for m in self.layers]
            both = torch.nn.functional.linear(flat, torch.cat(weights))
            # split: its backward is one concatenation (slicing's would be one zero-filled
            # gradient of the whole product per layer)
            lows = both.split([w.shape[0] for w in weights], dim=1)
            self.lows = {id(m): low for m, low in zip(self.layers, lows)}
            self.source = (x, x._version)
        low = self.lows.pop(id(layer))
        if not self.lows:  # all taken: let go of the input
            self.source = None
        return low


def sibling_groups(model: Any, layers: list[Any]) -> list[Siblings]:
    lora = {id(m) for m in layers}
    groups = []
    for parent in model.modules():
        for names in SIBLINGS:
            found = [getattr(parent, n, None) for n in names]
            if all(id(m) in lora for m in found):
                groups.append(Siblings(found))
    return groups


def one_dtype(layer: Any, name: str, x: torch.Tensor) -> bool:
    """Whether input, frozen weight and adapter share a dtype (float32 training): the
    product then needs no cast."""
    return x.dtype == layer.base_layer.weight.dtype == layer.lora_A[name].weight.dtype \
        == layer.lora_B[name].weight.dtype


def autocasting(x: torch.Tensor) -> bool:
    """Whether autocast is on for ``x``'s device (the fused product mixes the frozen
    layer's dtype with the adapters' float32 weights only under autocast)."""
    return torch.is_autocast_enabled(x.device.type)


@contextlib.contextmanager
def fast_adapters(model: Any, autocast: torch.dtype | None) -> Iterator[int]:
    """While training, LoRA layers run :func:`fused_forward` (under ``autocast``, a dtype,
    or where everything is one dtype, as in float32 training). Under autocast PEFT's input
    casts are skipped and, on CPU, the frozen float32 weights are held in the autocast
    dtype (see :func:`frozen_in`). All is undone on exit. Nothing changes under DeepSpeed
    ZeRO-3, which gathers a module's weights only when that module runs: the fused path
    reads the weights of LoRA modules it does not call. Yields how many layers were fused."""
    if not hasattr(model, "peft_config") or zero3():
        yield 0
        return
    from peft.helpers import disable_input_dtype_casting
    from peft.tuners.lora import Linear
    layers = [m for m in model.modules() if type(m) is Linear]
    for layer in layers:
        layer.forward = types.MethodType(fused_forward, layer)
    for group in sibling_groups(model, layers):
        for layer in group.layers:
            layer.__dict__["lora_siblings"] = group
    try:
        if autocast is None:
            yield len(layers)
        else:
            with disable_input_dtype_casting(model), frozen_in(layers, autocast):
                yield len(layers)
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)
            layer.__dict__.pop("lora_siblings", None)


def zero3() -> bool:
    from transformers.integrations import is_deepspeed_zero3_enabled
    return is_deepspeed_zero3_enabled()


@contextlib.contextmanager
def frozen_in(layers: list[Any], dtype: torch.dtype) -> Iterator[None]:
    """Hold the frozen float32 weights of these LoRA layers' plain linear layers on CPU in
    ``dtype``, and give the float32 originals back on exit. Autocast would cast each one
    at every forward pass anyway (the same values): a copy of every frozen weight, 212 MB
    for the default model, per step. A LoRA step of the default model (2,999 tokens, 8
    pairs interleaved in one process) took 0.982x the time (median of the pairs' ratios)."""
    held = [w for w in (layer.base_layer.weight for layer in layers
                        if type(layer.base_layer) is torch.nn.Linear)
            if w.device.type == "cpu" and w.dtype == torch.float32 and not w.requires_grad]
    originals = [w.data for w in held]
    for w in held:
        w.data = w.data.to(dtype)
    try:
        yield
    finally:
        for w, original in zip(held, originals):
            w.data = original


# adapter_config.json keys that do not change what a saved plain LoRA adds to its layers
# (how it was initialised or trained, where it was injected, bookkeeping). Any other key
# with a value leaves the merge to PEFT.
PLAIN_LORA = {"peft_type", "peft_version", "task_type", "base_model_name_or_path", "revision",
              "auto_mapping", "inference_mode", "r", "lora_alpha", "use_rslora", "lora_dropout",
              "target_modules", "exclude_modules", "layers_to_transform", "layers_pattern",
              "init_lora_weights", "loftq_config", "eva_config", "corda_config", "lora_ga_config",
              "megatron_core", "qalora_group_size", "bias"}
# Initialisations that leave the base weights alone. PiSSA, OLoRA, CorDA, LoftQ and the like
# move part of each weight into the adapter at the start, and PEFT redoes that on loading.
PLAIN_INIT = (True, False, "gaussian")
LORA_KEY = re.compile(r"base_model\.model\.(.+)\.lora_([AB])\.weight")


def merged_lora(model: Any, folder: Path, dtype: torch.dtype) -> Any | None:
    """``model`` (float32) with the plain LoRA adapter saved in ``folder`` added into its
    linear layers, ``W + scale * B @ A`` in float32 rounded once to ``dtype``, and the rest
    cast to ``dtype``; None where the adapter is anything else (PEFT merges those).

    PEFT wraps every layer (0.33 s for the default model), then adds into the float32
    weights in place, which are pages of the mapped checkpoint: writing them cost 1.0 s of
    copy-on-write faults here, and the cast another 0.15 s. This reads them and writes new
    ``dtype`` weights instead: 0.25 s in all, a quarter of the first token of ``agentsft
    chat --adapter``. A LoRA that finds no linear layer of its shape raises ValueError."""
    config = json.loads((folder / "adapter_config.json").read_text())
    weights_file = folder / "adapter_model.safetensors"
    if (config.get("peft_type") != "LORA" or config.get("bias", "none") != "none"
            or config.get("init_lora_weights", True) not in PLAIN_INIT
            or not isinstance(config.get("r"), int) or config.get("lora_alpha") is None
            or any(value for key, value in config.items() if key not in PLAIN_LORA)
            or not weights_file.is_file()):
        return None
    from safetensors.torch import load_file
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, weight in load_file(weights_file).items():
        found = LORA_KEY.fullmatch(key)
        if found is None:  # trained embeddings, saved modules, other adapter kinds
            return None
        pairs.setdefault(found[1], {})[found[2]] = weight
    r = config["r"]
    scale = config["lora_alpha"] / (math.sqrt(r) if config.get("use_rslora") else r)
    layers = dict(model.named_modules())
    names = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    for name, ab in pairs.items():
        layer = layers.get(name)
        if layer is not None and type(layer) is not torch.nn.Linear:
            return None  # a convolution, a quantized or a custom layer: PEFT's rules
        out_in = tuple(layer.weight.shape) if layer is not None else None
        if out_in is None or ab.keys() != {"A", "B"} or \
                (tuple(ab["B"].shape), tuple(ab["A"].shape)) != ((out_in[0], r), (r, out_in[1])):
            raise ValueError(f"its LoRA for {name!r} finds no linear layer of that shape")
        if names[id(layer.weight)] > 1:  # tied to another module's weight: PEFT's rules
            return None
    for name, ab in pairs.items():
        layer = layers[name]
        merged = torch.addmm(layer.weight.detach().float(), ab["B"].float(), ab["A"].float(),
                             alpha=scale)
        layer.weight = torch.nn.Parameter(merged.to(dtype), requires_grad=False)
    return weights_in(model, dtype)


def weights_in(model: Any, dtype: torch.dtype) -> Any:
    """``model`` with its parameters in ``dtype`` and its buffers as they are, as
    ``from_pretrained(dtype=...)`` loads it. ``model.to(dtype)`` would also round the
    rotary frequencies (kept in float32) to bfloat16: the merged demo run's logits then
    differed from its own bfloat16 export by up to 0.98 on the same weights."""
    for p in model.parameters():
        p.data = p.data.to(dtype)
    return model

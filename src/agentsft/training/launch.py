"""How a run was launched: one process, data parallel (torchrun or ``accelerate launch``), or
sharded by ``accelerate launch`` with FSDP or DeepSpeed (configs/accelerate/). What a
sharded run cannot take is refused before the model loads, with the fix."""

from __future__ import annotations

import importlib.util
import os

from agentsft.config import Config
from agentsft.errors import AgentsftError
from agentsft.hub import say


def sharding() -> str | None:
    """``FSDP2``, ``DeepSpeed ZeRO-3``... where ``accelerate launch`` shards this run, else None."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return f"DeepSpeed ZeRO-{os.environ.get('ACCELERATE_DEEPSPEED_ZERO_STAGE', '?')}"
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return f"FSDP{os.environ.get('FSDP_VERSION', '1')}"
    return None


def check_launch(cfg: Config, device: str) -> None:
    """Refuse what sharding cannot run; turn agentsft's fused layers off under it (they read
    whole weights, which a sharded model does not hold)."""
    shard = sharding()
    if shard is None:
        return
    if not device.startswith("cuda"):
        raise AgentsftError(
            f"{shard} (accelerate launch) shards the model over GPUs, and this run's device is "
            f"{device}: accelerate runs FSDP and DeepSpeed on CUDA only. Fix: on CPU, launch with "
            f"configs/accelerate/ddp.yaml (data parallel), or run on GPUs")
    if shard.startswith("DeepSpeed") and importlib.util.find_spec("deepspeed") is None:
        raise AgentsftError(f"{shard} needs the deepspeed package. Fix: pip install deepspeed")
    if shard == "FSDP1":
        raise AgentsftError("FSDP version 1 is not supported. Fix: set fsdp_version: 2 in the "
                            "accelerate config (configs/accelerate/fsdp2.yaml; accelerate 1.6 "
                            "or newer)")
    quant, shards_weights = cfg.quantization, shard.startswith("FSDP") or shard.endswith("ZeRO-3")
    if quant.bits == 8 and shards_weights:
        raise AgentsftError(f"8-bit weights cannot be sharded under {shard}. Fix: use 4-bit "
                            f"QLoRA (--method qlora) or LoRA")
    if quant.bits == 4 and shards_weights:
        if quant.quant_storage is None:
            quant.quant_storage = quant.compute_dtype
            say(f"QLoRA under {shard}: 4-bit weights packed as {quant.compute_dtype} "
                f"(bnb_4bit_quant_storage), so they shard with the others")
        elif quant.quant_storage != quant.compute_dtype:
            raise AgentsftError(
                f"quantization.quant_storage={quant.quant_storage} under {shard}: the packed 4-bit "
                f"weights must share the dtype of the others to be sharded with them. Fix: --set "
                f"quantization.quant_storage={quant.compute_dtype} (or leave it unset)")
    if cfg.training.fast_path != "off":
        say(f"fast paths off under {shard}: the model's and PEFT's own layers (agentsft's fused "
            f"layers read whole weights, which a sharded model does not hold)")
        cfg.training.fast_path = "off"

"""``agentsft`` under accelerate's FSDP2 on CPU, for tests/test_launch.py:

    accelerate launch --config_file configs/accelerate/fsdp2.yaml --num_processes 2 \\
        tests/fsdp_on_cpu.py train ...

accelerate turns a launch into FSDP only on CUDA-like devices (``AcceleratorState`` keeps
``MULTI_CPU`` on a CPU, with the FSDP plugin it was given unused), and agentsft refuses FSDP
without CUDA for that reason. This shim lifts that one gate: the state takes the FSDP plugin
of the launch, as it would on GPUs, and agentsft's launch check is told the device is CUDA.
Everything else is the real thing: accelerate's FSDP2 preparation (torch's fully_shard per
decoder layer over gloo), its sharded checkpoints and its gathered state dict, and agentsft's
Trainer, loss and saving."""

import sys

import accelerate.state as state
from accelerate.utils import DistributedType

import agentsft.training.launch as launch
import agentsft.training.recipe as recipe
from agentsft.cli import main

accelerate_init = state.AcceleratorState.__init__


def init(self, *args, **kwargs):
    accelerate_init(self, *args, **kwargs)
    plugin = kwargs.get("fsdp_plugin")
    if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = plugin
        state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP


state.AcceleratorState.__init__ = init
recipe.check_launch = lambda cfg, device: launch.check_launch(cfg, "cuda")

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

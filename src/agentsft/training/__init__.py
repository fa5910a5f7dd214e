"""Training: fine-tune a model on agent conversations (LoRA, QLoRA, full).

    recipe.py     train(): the recipe, one named step per module below
    rundir.py     the run directory; resuming from its last complete checkpoint
    data.py       tokenizer and template; conversations -> masked token rows
    model.py      base weights and the method (LoRA, QLoRA, full, a continued adapter)
    trainer.py    transformers.Trainer with atomic checkpoints and the loss on trained tokens
    callbacks.py  progress bar, metrics.jsonl, TensorBoard, best checkpoint, tool evaluation
    outputs.py    final/, best/, loss.png
"""

from agentsft.training.recipe import TrainResult, train
from agentsft.training.rundir import RunDir
from agentsft.training.trainer import AgentTrainer, TrainingStopped

__all__ = ["AgentTrainer", "RunDir", "TrainResult", "TrainingStopped", "train"]

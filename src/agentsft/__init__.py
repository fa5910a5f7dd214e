"""agentsft: fine-tune open language models into conversational, tool-using agents.

The public API, each name imported on first use (so ``agentsft --help`` does not load torch):

    read_conversations, Conversation, Message, Tool, ToolCall    data in the one shape
    get_template, encode_conversations, load_tokenizer           rendering, masks, tokens
    Config, load_config, train, TrainResult                      fine-tuning
    load_generator, Generator, Sampling                          generation
    evaluate                                                     scoring tool calls
    DialogAgent, FinetuneDialogAgent, ToolAgent, Toolkit,        agents
    Msg, UserAgent, converse
    AgentsftError, DataError                                     errors the user can fix

    cfg = agentsft.load_config("configs/persona.yaml", ["training.epochs=1"])
    result = agentsft.train(cfg)
    gen = agentsft.load_generator(adapter=result.run.root)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each loads on first use
    from agentsft.agents import (
        DialogAgent, FinetuneDialogAgent, Msg, ToolAgent, Toolkit, UserAgent, converse,
    )
    from agentsft.config import Config
    from agentsft.config import load as load_config
    from agentsft.data.readers import read_conversations
    from agentsft.data.schema import Conversation, Message, Tool, ToolCall
    from agentsft.data.templates import get_template
    from agentsft.data.tokenize import encode_conversations
    from agentsft.errors import AgentsftError, DataError
    from agentsft.evaluation import evaluate
    from agentsft.hub import load_tokenizer
    from agentsft.inference import Generator, Sampling, load_generator
    from agentsft.training import TrainResult, train

_EXPORTS = {
    "AgentsftError": "agentsft.errors", "DataError": "agentsft.errors",
    "Conversation": "agentsft.data.schema", "Message": "agentsft.data.schema",
    "Tool": "agentsft.data.schema", "ToolCall": "agentsft.data.schema",
    "read_conversations": "agentsft.data.readers", "get_template": "agentsft.data.templates",
    "encode_conversations": "agentsft.data.tokenize", "load_tokenizer": "agentsft.hub",
    "Config": "agentsft.config", "load_config": "agentsft.config:load",
    "train": "agentsft.training", "TrainResult": "agentsft.training",
    "load_generator": "agentsft.inference", "Generator": "agentsft.inference",
    "Sampling": "agentsft.inference", "evaluate": "agentsft.evaluation",
    "DialogAgent": "agentsft.agents", "FinetuneDialogAgent": "agentsft.agents",
    "ToolAgent": "agentsft.agents", "Toolkit": "agentsft.agents", "Msg": "agentsft.agents",
    "UserAgent": "agentsft.agents", "converse": "agentsft.agents",
}
# Written out (not computed) so that type checkers see what the package exports.
__all__ = ["AgentsftError", "Config", "Conversation", "DataError", "DialogAgent",
           "FinetuneDialogAgent", "Generator", "Message", "Msg", "Sampling", "Tool",
           "ToolAgent", "ToolCall", "Toolkit", "TrainResult", "UserAgent", "converse",
           "encode_conversations", "evaluate", "get_template", "load_config", "load_generator",
           "load_tokenizer", "read_conversations", "train"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agentsft' has no attribute {name!r}")
    module, _, attribute = _EXPORTS[name].partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

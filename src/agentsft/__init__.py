"""agentsft: fine-tune open language models into conversational, tool-using agents.

The public API, imported on first use (so ``agentsft --help`` does not load torch):

    read_conversations, Conversation, Message, Tool, ToolCall    data
    get_template, encode_conversations, load_tokenizer           rendering and tokens
    DialogAgent, FinetuneDialogAgent, ToolAgent, Toolkit,         agents
    Msg, UserAgent, converse
    AgentsftError, DataError                                      errors the user can fix
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "AgentsftError": "agentsft.errors", "DataError": "agentsft.errors",
    "Conversation": "agentsft.data.schema", "Message": "agentsft.data.schema",
    "Tool": "agentsft.data.schema", "ToolCall": "agentsft.data.schema",
    "read_conversations": "agentsft.data.readers", "get_template": "agentsft.data.templates",
    "encode_conversations": "agentsft.data.tokenize", "load_tokenizer": "agentsft.models",
    "DialogAgent": "agentsft.agents", "FinetuneDialogAgent": "agentsft.agents",
    "ToolAgent": "agentsft.agents", "Toolkit": "agentsft.agents", "Msg": "agentsft.agents",
    "UserAgent": "agentsft.agents", "converse": "agentsft.agents",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'agentsft' has no attribute {name!r}")

"""agentsft: fine-tune open language models into conversational, tool-using agents."""

__version__ = "0.1.0"

from agentsft.data.readers import read_conversations
from agentsft.data.schema import Conversation, Message, Tool, ToolCall
from agentsft.data.templates import get_template
from agentsft.data.tokenize import encode_conversations
from agentsft.errors import AgentsftError, DataError
from agentsft.models import load_tokenizer

__all__ = [
    "AgentsftError", "Conversation", "DataError", "Message", "Tool", "ToolCall",
    "encode_conversations", "get_template", "load_tokenizer", "read_conversations",
]

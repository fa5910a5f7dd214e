"""Agents: dialog with memory, self-fine-tuning, tool use with real Python functions."""

from agentsft.agents.dialog import DialogAgent, FinetuneDialogAgent, Msg, UserAgent, converse
from agentsft.agents.tool_agent import ToolAgent, tool_agents
from agentsft.agents.toolkit import Toolkit, ToolResult, function_schema

__all__ = ["DialogAgent", "FinetuneDialogAgent", "Msg", "ToolAgent", "ToolResult", "Toolkit",
           "UserAgent", "converse", "function_schema", "tool_agents"]

"""What evaluation predicts: the assistant steps of conversations (stepwise), or the user
turns (agent mode), each with the gold history before it and the gold reply."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentsft.data.schema import Conversation, Message, ToolCall


@dataclass
class Step:
    """One assistant step to predict: the prompt before it and the gold reply."""

    id: str
    step: int
    file: str
    history: Conversation
    gold: Message
    gold_calls: list[ToolCall] = field(default_factory=list)
    gold_text: str = ""


def record_id(conv: Conversation) -> str:
    """The record's own id, else its line number."""
    if conv.id is not None:
        return conv.id
    return (conv.source or "?").rsplit(":", 1)[-1]


def source_file(conv: Conversation) -> str:
    return (conv.source or "?").rsplit(":", 1)[0]


def stepwise_steps(convs: list[Conversation]) -> list[Step]:
    """Every assistant message, with the gold conversation before it as its history."""
    steps = []
    for conv in convs:
        n = 0
        for i, m in enumerate(conv.messages):
            if m.role != "assistant":
                continue
            n += 1
            history = Conversation(conv.messages[:i], tools=conv.tools, source=conv.source, id=conv.id)
            steps.append(Step(record_id(conv), n, source_file(conv), history, m,
                              list(m.tool_calls), m.content))
    return steps


def agent_steps(convs: list[Conversation]) -> list[Step]:
    """Every user turn, with the gold turn that answers it: all the calls the assistant
    made before its final answer, and that answer."""
    steps = []
    for conv in convs:
        users = [i for i, m in enumerate(conv.messages) if m.role == "user"]
        for n, u in enumerate(users, 1):
            end = next((j for j in users if j > u), len(conv.messages))
            turn = [m for m in conv.messages[u + 1:end] if m.role == "assistant"]
            if not turn:
                continue
            calls = [c for m in turn for c in m.tool_calls]
            history = Conversation(conv.messages[:u + 1], tools=conv.tools, source=conv.source,
                                   id=conv.id)
            steps.append(Step(record_id(conv), n, source_file(conv), history, turn[-1], calls,
                              turn[-1].content if not turn[-1].tool_calls else ""))
    return steps

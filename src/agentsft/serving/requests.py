"""OpenAI chat-completion requests, read and checked: every problem is an
:class:`ApiError` naming the field (OpenAI's ``param``) and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentsft.data.schema import Conversation, DataError, Tool, conversation_from_dict, parse_tools

IGNORED = {"user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"}
"""Fields that change nothing about the answer: accepted and ignored."""
NEUTRAL = {"frequency_penalty": 0, "presence_penalty": 0, "logprobs": False, "logit_bias": {},
           "top_logprobs": None, "n": 1, "response_format": {"type": "text"},
           "modalities": ["text"], "reasoning_effort": None, "verbosity": None}
"""Fields agentsft does not implement: accepted only at the value that means "off"."""
KNOWN = {"model", "messages", "tools", "tool_choice", "parallel_tool_calls", "max_tokens",
         "max_completion_tokens", "temperature", "top_p", "stop", "seed", "stream",
         "stream_options"} | IGNORED | set(NEUTRAL)


class ApiError(Exception):
    """An answer in OpenAI's error shape: HTTP ``status``, ``message``, ``param``, ``code``."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             413: "invalid_request_error", 500: "server_error", 503: "server_error"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}


@dataclass
class ChatRequest:
    """What a chat-completion request asks for, checked."""

    model: str
    conversation: Conversation
    tool_choice: str = "auto"
    """``auto``, ``required`` or a tool's name; ``none`` has already hidden the tools."""
    parallel_tool_calls: bool = True
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False


def bad(message: str, param: str | None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param, code)


def number(body: dict[str, Any], key: str, low: float, high: float, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise bad(f"{key} must be a number from {low} to {high}, got {value!r}", key)
    return float(value)


def whole(body: dict[str, Any], key: str, low: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise bad(f"{key} must be a whole number of at least {low}, got {value!r}", key)
    return value


def flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(f"{key} must be true or false, got {value!r}", key)
    return value


def neutral(key: str, value: Any) -> bool:
    if value is None or value == NEUTRAL[key]:
        return True
    return key == "response_format" and isinstance(value, dict) and value.get("type") == "text"


def tool_choice(raw: Any, tools: list[Tool] | None) -> str:
    """``auto`` | ``none`` | ``required`` | a tool's name, from the request's form."""
    if raw is None:
        return "auto"
    if isinstance(raw, str):
        if raw not in ("auto", "none", "required"):
            raise bad(f"tool_choice must be auto, none, required or "
                      f'{{"type": "function", "function": {{"name": ...}}}}, got {raw!r}', "tool_choice")
        name = raw
    elif isinstance(raw, dict) and isinstance(raw.get("function"), dict) \
            and isinstance(raw["function"].get("name"), str):
        name = raw["function"]["name"]
        if name not in {t.name for t in tools or ()}:
            offered = ", ".join(t.name for t in tools or ()) or "none"
            raise bad(f"tool_choice names {name!r}, which is not among the tools (offered: "
                      f"{offered})", "tool_choice.function.name")
    else:
        raise bad('tool_choice must be a string or {"type": "function", "function": {"name": ...}}',
                  "tool_choice")
    if name == "required" and not tools:
        raise bad("tool_choice is required but no tools were given", "tool_choice")
    return name


def stop_strings(raw: Any) -> list[str]:
    if raw is None:
        return []
    stops = [raw] if isinstance(raw, str) else raw
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise bad("stop must be a non-empty string or a list of at most 4 of them", "stop")
    return stops


def chat_request(body: Any) -> ChatRequest:
    """The request in ``body`` (parsed JSON), checked field by field."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object", None)
    for key in body:
        if key not in KNOWN:
            raise bad(f"unrecognized request argument supplied: {key}", key, "unsupported_parameter")
    for key, value in body.items():
        if key in NEUTRAL and not neutral(key, value):
            raise bad(f"{key}={value!r} is not supported by agentsft's server; leave it out",
                      key, "unsupported_parameter")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("model is required: the name of a served model (GET /v1/models lists them)", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages must be a non-empty list of messages", "messages")
    for i, m in enumerate(messages):  # the newer name of the system role
        if isinstance(m, dict) and m.get("role") == "developer":
            messages[i] = {**m, "role": "system"}
    try:
        tools = parse_tools(body.get("tools"))
        conv = conversation_from_dict({"messages": messages})
    except DataError as e:
        raise bad(f"{e.problem}. Fix: {e.fix}" if e.fix else e.problem, e.field) from None
    choice = tool_choice(body.get("tool_choice"), tools)
    conv.tools = None if choice == "none" or not tools else tools
    options = body.get("stream_options")
    if options is not None and not (isinstance(options, dict) and set(options) <= {"include_usage"}):
        raise bad('stream_options must be {"include_usage": true|false}', "stream_options")
    stream = flag(body, "stream", False)
    if options is not None and not stream:
        raise bad("stream_options is only allowed with stream true", "stream_options")
    limits = [v for v in (whole(body, "max_tokens", 1), whole(body, "max_completion_tokens", 1)) if v]
    return ChatRequest(
        model=model, conversation=conv, tool_choice="auto" if choice == "none" else choice,
        parallel_tool_calls=flag(body, "parallel_tool_calls", True),
        max_tokens=min(limits) if limits else None,
        temperature=number(body, "temperature", 0, 2, 1.0), top_p=number(body, "top_p", 0, 1, 1.0),
        stop=stop_strings(body.get("stop")), seed=whole(body, "seed", -2**63),
        stream=stream, include_usage=flag(options or {}, "include_usage", False))

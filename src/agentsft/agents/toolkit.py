"""Python functions as tools: JSON schemas from type hints and docstrings, checked calls.

    kit = Toolkit([get_weather, calculate])
    kit.tools                     # schemas for the agent template
    kit.run(ToolCall("get_weather", {"city": "Paris"}))   # never raises

A call's arguments are checked against the schema before the function runs;
the function runs with a timeout (an ``async`` tool is cancelled at it; a plain one
is abandoned, and the error says it is still running); an unknown tool, bad arguments,
an exception or a timeout comes back as an error text for the model, never as a crash.
Model output is only ever passed as keyword arguments: nothing is evaluated.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import queue
import re
import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentsft.data.arguments import argument_errors
from agentsft.data.schema import Tool, ToolCall
from agentsft.errors import AgentsftError

@dataclass
class ToolResult:
    content: str
    """What goes back to the model (the result, or an error text)."""
    error: bool = False


UNDOCUMENTED = "\x00undocumented"
"""Stands in for an argument's missing description while transformers reads the docstring."""


def documented(fn: Callable) -> Callable:
    """A stand-in for ``fn`` that transformers' ``get_json_schema`` accepts: the same
    signature and hints (``Any`` where one is missing), a docstring describing every
    argument (:data:`UNDOCUMENTED` where ``fn``'s does not). ``get_json_schema`` refuses
    functions without a docstring, an argument description or a type hint."""
    from transformers.utils.chat_template_utils import parse_google_format_docstring
    # "days (int): ..." -> "days: ...": transformers before 5.24 read the type in brackets
    # as the end of the previous argument's description
    doc = re.sub(r"^(\s*\w+)\s*\([^)\n]*\)\s*:", r"\1:", inspect.cleandoc(fn.__doc__ or ""),
                 flags=re.M)
    described = parse_google_format_docstring(doc)[1] if doc else {}
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"]
    missing = [p.name for p in params if p.name not in described]
    if missing:
        extra = "\n".join(f"    {n}: {UNDOCUMENTED}" for n in missing)
        doc = f"{doc or fn.__name__}\n\nArgs:\n{extra}" if not described else \
            re.sub(r"(\n\s*(?:Args|Arguments|Parameters):\s*\n)", rf"\1{extra}\n", doc, count=1)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolved forward references: no types
        hints = {}

    def stand_in(*args: Any, **kwargs: Any) -> None: ...
    stand_in.__name__, stand_in.__doc__ = fn.__name__, doc
    stand_in.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [p.replace(annotation=hints.get(p.name, Any)) for p in params])
    stand_in.__annotations__ = {p.name: hints.get(p.name, Any) for p in params}
    return stand_in


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema for OpenAPI's ``nullable`` (transformers writes it for ``Optional``), so
    that an explicit null validates."""
    if schema.pop("nullable", False) and "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        schema["type"] = kinds + ["null"] if "null" not in kinds else kinds
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            nullable(schema[key])
    for part in schema.get("prefixItems", []) + schema.get("anyOf", []):
        nullable(part)
    return schema


def function_schema(fn: Callable, name: str | None = None, description: str | None = None) -> Tool:
    """A Tool for ``fn`` by transformers' ``get_json_schema`` (types from the hints, texts
    from a Google-style docstring), extended: arguments without a description or a hint are
    allowed, ``Optional`` accepts null, simple defaults are shown, and the description is
    the docstring's first paragraph (a prompt pays for every word of it)."""
    from transformers.utils import get_json_schema
    schema = get_json_schema(documented(fn))["function"]
    params = schema["parameters"]
    defaults = inspect.signature(fn).parameters
    for key, prop in params.get("properties", {}).items():
        if prop.get("description") == UNDOCUMENTED:
            del prop["description"]
        nullable(prop)
        default = defaults[key].default
        if default is not inspect.Parameter.empty and isinstance(default, (str, int, float, bool)):
            prop["default"] = default
    if not params.get("required"):
        params.pop("required", None)
    first = re.split(r"\n\s*\n", schema.get("description", "").strip())[0]
    summary = "" if first == fn.__name__ else " ".join(first.split())
    return Tool(name or fn.__name__, description if description is not None else summary, params)


class StillRunning(TimeoutError):
    """A synchronous tool went past its timeout and goes on in its thread."""


def call_with_timeout(fn: Callable, args: dict[str, Any], timeout: float) -> Any:
    """``fn(**args)`` in a daemon thread, waited for ``timeout`` seconds. An ``async`` tool
    is cancelled at the timeout (TimeoutError). A plain function cannot be stopped from
    outside: it is abandoned (StillRunning), goes on in its daemon thread and cannot keep
    the process alive. (A worker process could kill it, but a tool that keeps state, a
    cart or a connection, would then lose every change it made.)"""
    box: queue.Queue = queue.Queue(maxsize=1)
    is_async = inspect.iscoroutinefunction(fn)

    def work() -> None:
        try:
            box.put((True, asyncio.run(asyncio.wait_for(fn(**args), timeout)) if is_async
                     else fn(**args)))
        except BaseException as e:  # handed back to the caller, as the tool's error
            box.put((False, e))

    threading.Thread(target=work, daemon=True, name=f"tool-{getattr(fn, '__name__', 'call')}").start()
    try:
        # an async tool's own timeout cancels it; the margin lets the cancellation land
        ok, value = box.get(timeout=timeout + (5.0 if is_async else 0.0))
    except queue.Empty:
        raise (TimeoutError if is_async else StillRunning) from None
    if not ok:
        raise value
    return value


class Toolkit:
    """A set of Python functions the agent may call."""

    def __init__(self, functions: list[Callable] = (), timeout: float = 10.0):
        self.timeout = timeout
        self.functions: dict[str, Callable] = {}
        self.schemas: dict[str, Tool] = {}
        for fn in functions:
            self.add(fn)

    def add(self, fn: Callable | None = None, *, name: str | None = None,
            description: str | None = None, parameters: dict[str, Any] | None = None):
        """Register ``fn`` (usable as a decorator); ``parameters`` replaces the derived schema."""
        def register(f: Callable) -> Callable:
            tool = function_schema(f, name, description)
            if parameters is not None:
                tool.parameters = parameters
            self.functions[tool.name] = f
            self.schemas[tool.name] = tool
            return f
        return register(fn) if fn is not None else register

    @property
    def tools(self) -> list[Tool]:
        return list(self.schemas.values())

    def __len__(self) -> int:
        return len(self.functions)

    def run(self, call: ToolCall) -> ToolResult:
        """Run one call. Every failure becomes an error text for the model."""
        fn = self.functions.get(call.name)
        if fn is None:
            known = ", ".join(self.functions) or "none"
            return ToolResult(f"Error: there is no tool named '{call.name}'. Available tools: {known}.",
                              error=True)
        problems = argument_errors(call.arguments, self.schemas[call.name].parameters)
        if problems:
            return ToolResult(f"Error: invalid arguments for {call.name}: {'; '.join(problems)}.",
                              error=True)
        try:
            value = call_with_timeout(fn, call.arguments, self.timeout)
        except StillRunning:
            return ToolResult(f"Error: {call.name} did not finish within {self.timeout:g} seconds; "
                              f"it is still running in the background and its result will be "
                              f"ignored.", error=True)
        except TimeoutError:
            return ToolResult(f"Error: {call.name} did not finish within {self.timeout:g} seconds "
                              f"and was cancelled.", error=True)
        except Exception as e:
            return ToolResult(f"Error: {call.name} failed: {type(e).__name__}: {e}", error=True)
        return ToolResult(value if isinstance(value, str)
                          else json.dumps(value, ensure_ascii=False, default=str))

    @classmethod
    def from_file(cls, path: str | Path, timeout: float = 10.0) -> "Toolkit":
        """The tools of a Python file: its ``TOOLS`` list, else its public functions."""
        path = Path(path)
        if not path.is_file():
            raise AgentsftError(f"{path}: no such tools file. Fix: pass a .py file defining functions")
        spec = importlib.util.spec_from_file_location(f"agentsft_tools_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise AgentsftError(f"{path}: importing it failed ({type(e).__name__}: {e}). "
                                f"Fix: make the file importable on its own") from None
        functions = getattr(module, "TOOLS", None)
        if functions is None:
            functions = [f for n, f in vars(module).items() if inspect.isfunction(f)
                         and not n.startswith("_") and f.__module__ == module.__name__]
        if not functions:
            raise AgentsftError(f"{path}: defines no tools. Fix: define functions (or a TOOLS list)")
        return cls(list(functions), timeout)

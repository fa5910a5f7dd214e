"""Python functions as tools: JSON schemas from type hints and docstrings, checked calls.

    kit = Toolkit([get_weather, calculate])
    kit.tools                     # schemas for the agent template
    kit.run(ToolCall("get_weather", {"city": "Paris"}))   # never raises

A call's arguments are checked against the schema before the function runs;
the function runs with a timeout; an unknown tool, bad arguments, an exception
or a timeout comes back as an error text for the model, never as a crash.
Model output is only ever passed as keyword arguments: nothing is evaluated.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import queue
import re
import threading
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentsft.data.schema import Tool, ToolCall
from agentsft.errors import AgentsftError

SECTIONS = ("Args:", "Arguments:", "Parameters:", "Returns:", "Return:", "Raises:", "Yields:",
            "Examples:", "Example:", "Note:", "Notes:")


@dataclass
class ToolResult:
    content: str
    """What goes back to the model (the result, or an error text)."""
    error: bool = False


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The first paragraph (the tool's description; a prompt pays for every word of it)
    and ``{argument: description}`` from a Google-style docstring."""
    lines = inspect.cleandoc(doc or "").splitlines()
    summary, args, section, current = [], {}, None, None
    for line in lines:
        stripped = line.strip()
        if stripped in SECTIONS:
            section, current = stripped, None
            continue
        if section is None:
            if not stripped and summary:
                section = "body"  # the first paragraph describes the tool; the rest is for people
            else:
                summary.append(stripped)
        elif section in ("Args:", "Arguments:", "Parameters:") and stripped:
            m = re.match(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$", stripped)
            if m and not line.startswith(" " * 8):
                current = m.group(1).lstrip("*")
                args[current] = m.group(3).strip()
            elif current:
                args[current] = f"{args[current]} {stripped}".strip()
    return " ".join(p for p in summary if p).strip(), args


def type_schema(hint: Any) -> dict[str, Any]:
    """The JSON schema of a Python type hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    simple = {str: "string", int: "integer", float: "number", bool: "boolean",
              dict: "object", list: "array", type(None): "null"}
    if hint in simple:
        return {"type": simple[hint]}
    if origin is typing.Literal:
        kinds = {type(a) for a in args}
        out: dict[str, Any] = {"enum": list(args)}
        if len(kinds) == 1 and kinds.pop() in simple:
            out["type"] = simple[type(args[0])]
        return out
    if origin in (list, tuple, set, frozenset):
        return {"type": "array", "items": type_schema(args[0])} if args else {"type": "array"}
    if origin is dict:
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if set(options) <= {int, float}:
            return {"type": "number"}
        if len(options) == 1:
            return type_schema(options[0])
        return {"anyOf": [type_schema(a) for a in options]}
    return {}


def function_schema(fn: Callable, name: str | None = None, description: str | None = None) -> Tool:
    """A Tool for ``fn``: parameters from its signature and hints, texts from its docstring."""
    summary, arg_docs = parse_docstring(fn.__doc__)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolved forward references: fall back to no types
        hints = {}
    props, required = {}, []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "self":
            continue
        schema = type_schema(hints.get(p.name, Any))
        if p.name in arg_docs:
            schema["description"] = arg_docs[p.name]
        if p.default is p.empty:
            required.append(p.name)
        elif p.default is not None and isinstance(p.default, (str, int, float, bool)):
            schema["default"] = p.default
        props[p.name] = schema
    params: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        params["required"] = required
    return Tool(name or fn.__name__, description if description is not None else summary, params)


JSON_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
              "array": (list,), "object": (dict,), "null": (type(None),)}


def type_errors(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where} must be one of {json.dumps(schema['enum'])}, got {json.dumps(value)}"]
    if "anyOf" in schema:
        if all(type_errors(value, s, where) for s in schema["anyOf"]):
            return [f"{where} has the wrong type: {json.dumps(value)}"]
        return []
    kind = schema.get("type")
    if kind is None:
        return []
    kinds = kind if isinstance(kind, list) else [kind]
    ok = any(isinstance(value, JSON_TYPES.get(k, object)) and not (
        k in ("integer", "number") and isinstance(value, bool)) for k in kinds)
    if not ok:
        return [f"{where} must be {' or '.join(kinds)}, got {json.dumps(value)}"]
    if "array" in kinds and isinstance(value, list) and "items" in schema:
        return [e for i, v in enumerate(value) for e in type_errors(v, schema["items"], f"{where}[{i}]")]
    return []


def argument_errors(args: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """What is wrong with ``args`` under a JSON schema of an object (empty: nothing)."""
    props = schema.get("properties", {})
    errors = [f"missing required argument '{k}'" for k in schema.get("required", []) if k not in args]
    if schema.get("additionalProperties", False) is not True:
        errors += [f"unknown argument '{k}' (expected: {', '.join(props) or 'none'})"
                   for k in args if k not in props]
    for k, v in args.items():
        if k in props:
            errors += type_errors(v, props[k], f"argument '{k}'")
    return errors


def call_with_timeout(fn: Callable, args: dict[str, Any], timeout: float) -> Any:
    """``fn(**args)`` in a daemon thread: a call that hangs is abandoned after ``timeout``
    seconds and cannot keep the process alive."""
    box: queue.Queue = queue.Queue(maxsize=1)

    def work() -> None:
        try:
            box.put((True, fn(**args)))
        except BaseException as e:  # handed back to the caller, as the tool's error
            box.put((False, e))

    threading.Thread(target=work, daemon=True, name=f"tool-{getattr(fn, '__name__', 'call')}").start()
    try:
        ok, value = box.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError from None
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
        except TimeoutError:
            return ToolResult(f"Error: {call.name} did not finish within {self.timeout:g} seconds.",
                              error=True)
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

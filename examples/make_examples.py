#!/usr/bin/env python3
"""Generate the example training data in this folder.

Writes three files:

* ``persona.jsonl``  - identity / small-talk chats for the "Marlo" persona
  (OpenAI chat format, no tools).
* ``tools.jsonl``    - tool-use chats in OpenAI format with a ``tools`` list.
* ``msagent.jsonl``  - tool-use chats in the ModelScope agent format.

Then it runs ``make_calls.py`` with the same seed, which writes
``calls_train.jsonl`` and ``calls_test.jsonl`` (function-calling data with
held-out tools; see that file).

Every tool result (and every number an answer quotes from a result) comes from
actually calling the functions in ``tools.py``. The output depends only on
``--seed``: running the script twice gives byte-identical files.

Usage::

    python examples/make_examples.py [--seed 0] [--out examples/]
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import random
import re
import sys
import tempfile
import typing
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

HERE = Path(__file__).resolve().parent


def load_tools() -> ModuleType:
    """Import tools.py from this script's folder, whatever the cwd is."""
    return load_module("tools.py", "agentsft_example_tools")


def load_module(filename: str, name: str) -> ModuleType:
    """Import a file of this script's folder by path, whatever the cwd is."""
    path = HERE / filename
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    old = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # keep the examples folder free of __pycache__
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = old
    return module


T = load_tools()
FUNCS: dict[str, Callable[..., Any]] = {fn.__name__: fn for fn in T.TOOLS}

# ---------------------------------------------------------------------------
# JSON schemas, built from type hints and the Google-style docstrings
# ---------------------------------------------------------------------------

_JSON_TYPES = {str: "string", float: "number", int: "integer", bool: "boolean"}

# Values a parameter may take that the hints cannot express.
_ENUMS = {("get_weather", "unit"): ["C", "F"]}


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Return (description, {param: description}) from a Google-style docstring."""
    lines = inspect.cleandoc(doc).splitlines()
    desc_lines: list[str] = []
    args: dict[str, str] = {}
    i = 0
    while i < len(lines) and lines[i].strip() not in ("Args:", "Returns:", "Raises:"):
        desc_lines.append(lines[i].strip())
        i += 1
    if i < len(lines) and lines[i].strip() == "Args:":
        i += 1
        current = None
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                break
            if not line.startswith(" "):
                break
            match = re.match(r"^ {4}(\w+)(?: \([^)]*\))?:\s*(.*)$", line)
            if match:
                current = match.group(1)
                args[current] = match.group(2).strip()
            elif current is not None:
                args[current] += " " + line.strip()
            i += 1
    description = " ".join(" ".join(desc_lines).split())
    return description, args


def tool_schema(fn: Callable[..., Any]) -> dict:
    description, arg_docs = _parse_docstring(fn.__doc__ or "")
    hints = typing.get_type_hints(fn)
    properties: dict[str, dict] = {}
    required: list[str] = []
    for name, param in inspect.signature(fn).parameters.items():
        prop: dict[str, Any] = {"type": _JSON_TYPES[hints[name]]}
        enum = _ENUMS.get((fn.__name__, name))
        if enum is not None:
            prop["enum"] = enum
        prop["description"] = arg_docs[name]
        properties[name] = prop
        if param.default is inspect.Parameter.empty:
            required.append(name)
    return {
        "type": "function",
        "function": {
            "name": fn.__name__,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
            },
        },
    }


SCHEMAS = [tool_schema(fn) for fn in T.TOOLS]

# ---------------------------------------------------------------------------
# Running tools and formatting numbers
# ---------------------------------------------------------------------------


def run_tool(name: str, args: dict) -> tuple[bool, Any, str]:
    """Call a tool; return (ok, value, content string for the tool message)."""
    try:
        value = FUNCS[name](**args)
    except ValueError as exc:
        return False, exc, f"Error: {exc}"
    content = json.dumps(value) if isinstance(value, dict) else str(value)
    return True, value, content


def fmt(x: float | int, decimals: int = 4) -> str:
    """Human-friendly number: thousands separators, no trailing zeros."""
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    if isinstance(x, int):
        return f"{x:,}" if abs(x) >= 10000 else str(x)
    sep = "," if abs(x) >= 10000 else ""
    text = f"{x:{sep}.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def approx(x: float | int, decimals: int = 4) -> str:
    """fmt(x), prefixed with 'about ' when rounding for display changed it."""
    shown = fmt(x, decimals)
    exact = isinstance(x, int) or float(x) == round(float(x), decimals)
    return shown if exact else f"about {shown}"


def money(x: float | int) -> str:
    shown = f"${x:,.2f}"
    return shown if round(float(x), 2) == float(x) else f"about {shown}"


def num_in_expr(x: float | int) -> str:
    """A number as it should appear inside an expression argument."""
    text = str(x)
    return f"({text})" if text.startswith("-") else text


# ---------------------------------------------------------------------------
# Shared vocabulary
# ---------------------------------------------------------------------------

UNIT_NAMES = {
    "m": ("meter", "meters"),
    "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "mi": ("mile", "miles"),
    "ft": ("foot", "feet"),
    "in": ("inch", "inches"),
    "kg": ("kilogram", "kilograms"),
    "g": ("gram", "grams"),
    "lb": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "l": ("liter", "liters"),
    "ml": ("milliliter", "milliliters"),
    "gal": ("gallon", "gallons"),
    "C": ("degree Celsius", "degrees Celsius"),
    "F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "K": ("kelvin", "kelvin"),
}

UNIT_ZH = {
    "m": "米", "km": "公里", "cm": "厘米", "mm": "毫米", "mi": "英里", "ft": "英尺",
    "in": "英寸", "kg": "千克", "g": "克", "lb": "磅", "oz": "盎司", "l": "升",
    "ml": "毫升", "gal": "加仑", "C": "摄氏度", "F": "华氏度", "K": "开尔文",
}


def qty(value: float | int, unit: str, style: str = "name") -> str:
    """'5 kilometers', '5 km', '20°C' or '20 degrees Celsius'."""
    shown = fmt(value)
    if unit in ("C", "F"):
        if style == "abbr":
            return f"{shown}°{unit}"
        return f"{shown} {UNIT_NAMES[unit][0 if shown in ('1', '-1') else 1]}"
    if unit == "K":
        return f"{shown} K" if style == "abbr" else f"{shown} kelvin"
    if style == "abbr":
        return f"{shown} {unit}"
    singular, plural = UNIT_NAMES[unit]
    return f"{shown} {singular if shown == '1' else plural}"


# (from, to, low, high, allow one decimal)
CONVERSIONS = [
    ("km", "mi", 1, 60, True), ("mi", "km", 1, 40, True), ("m", "ft", 2, 400, False),
    ("ft", "m", 3, 1200, False), ("in", "cm", 1, 90, True), ("cm", "in", 2, 250, False),
    ("mm", "in", 5, 600, False), ("m", "km", 150, 25000, False), ("mi", "m", 1, 5, True),
    ("ft", "in", 2, 12, True), ("km", "m", 1, 20, True), ("cm", "m", 20, 900, False),
    ("kg", "lb", 1, 120, True), ("lb", "kg", 1, 250, True), ("g", "oz", 20, 900, False),
    ("oz", "g", 1, 32, True), ("lb", "oz", 1, 12, True), ("kg", "g", 1, 15, True),
    ("C", "F", -25, 42, False), ("F", "C", -5, 110, False), ("C", "K", -40, 45, False),
    ("K", "C", 240, 330, False), ("F", "K", 0, 105, False),
    ("l", "gal", 1, 80, True), ("gal", "l", 1, 25, True), ("ml", "l", 100, 5000, False),
    ("l", "ml", 1, 6, True), ("gal", "ml", 1, 3, True), ("ml", "gal", 500, 9000, False),
]


def pick_conversion(rng: random.Random) -> tuple[float | int, str, str]:
    src, dst, low, high, decimal = rng.choice(CONVERSIONS)
    value: float | int = rng.randint(low, high)
    if decimal and rng.random() < 0.3:
        value = round(value + rng.randint(1, 9) / 10, 1)
    return value, src, dst


CITIES = list(T._WEATHER)  # the tool's own table, in its defined order

CITY_ZH = {
    "Beijing": "北京", "Hangzhou": "杭州", "Tokyo": "东京", "Paris": "巴黎",
    "London": "伦敦", "New York": "纽约", "Sydney": "悉尼", "Singapore": "新加坡",
    "Berlin": "柏林", "Toronto": "多伦多",
}

COND_NOUN = {
    "light rain": "light rain", "overcast": "overcast skies", "clear": "clear skies",
    "partly cloudy": "partly cloudy skies", "sunny": "sunshine", "drizzle": "drizzle",
    "snow showers": "snow showers", "humid and hazy": "humid, hazy air",
    "cloudy": "cloudy skies", "foggy": "fog", "thunderstorms": "thunderstorms",
    "heavy rain": "heavy rain",
}

COND_ZH = {
    "light rain": "小雨", "overcast": "阴天", "clear": "晴朗", "partly cloudy": "多云",
    "sunny": "晴", "drizzle": "毛毛雨", "snow showers": "阵雪", "humid and hazy": "闷热有霾",
    "cloudy": "多云", "foggy": "有雾", "thunderstorms": "雷阵雨", "heavy rain": "大雨",
}

UNKNOWN_PLACES = ["Atlantis", "Gotham", "Narnia", "El Dorado", "Madrid", "Lilliput"]


def deg(w: dict) -> str:
    return f"{w['temperature']}°{w['unit']}"


def is_rainy(cond: str) -> bool:
    return any(word in cond for word in ("rain", "drizzle", "thunder"))


def weather_sentence(w: dict, rng: random.Random) -> str:
    c, t, h, k = w["city"], deg(w), w["humidity"], w["wind_kph"]
    cond, noun = w["condition"], COND_NOUN.get(w["condition"], w["condition"])
    options = [
        f"It's {t} in {c} right now with {noun}. Humidity is {h}% and the wind is {k} km/h.",
        f"{c}: {cond}, {t}, humidity {h}%, wind {k} km/h.",
        f"Right now {c} is seeing {noun} at {t}, with {h}% humidity and winds around {k} km/h.",
        f"In {c} it's currently {t} ({cond}). Humidity sits at {h}% and the wind is blowing at {k} km/h.",
        f"The current weather in {c}: {cond}, {t}. Humidity {h}%, wind {k} km/h.",
        f"{c} has {noun} at the moment, {t}, with humidity at {h}% and wind at {k} km/h.",
        f"Currently {t} with {noun} in {c}. Expect {h}% humidity and wind of about {k} km/h.",
    ]
    return rng.choice(options)


def weather_short(w: dict) -> str:
    return f"{w['city']} is {deg(w)} with {COND_NOUN.get(w['condition'], w['condition'])}"


def weather_sentence_zh(w: dict, rng: random.Random) -> str:
    c = CITY_ZH.get(w["city"], w["city"])
    cond = COND_ZH.get(w["condition"], w["condition"])
    t, h, k = deg(w), w["humidity"], w["wind_kph"]
    options = [
        f"{c}现在{cond}，气温 {t}，湿度 {h}%，风速 {k} km/h。",
        f"{c}目前的天气是{cond}，温度 {t}，湿度 {h}%，风速约 {k} km/h。",
        f"查到了：{c}当前{cond}，{t}，湿度 {h}%，风速 {k} km/h。",
    ]
    return rng.choice(options)


def casual(rng: random.Random, text: str, p: float = 0.25) -> str:
    """Sometimes make a question look typed in a hurry."""
    if rng.random() < p:
        text = text.rstrip("?.!").lower()
    return text


# ---------------------------------------------------------------------------
# OpenAI-format conversation builder
# ---------------------------------------------------------------------------


class Chat:
    def __init__(self, system: str | None = None) -> None:
        self.messages: list[dict] = []
        self.calls = 0
        self.errors = 0
        if system is not None:
            self.messages.append({"role": "system", "content": system})

    def user(self, text: str) -> "Chat":
        self.messages.append({"role": "user", "content": text})
        return self

    def say(self, text: str) -> "Chat":
        self.messages.append({"role": "assistant", "content": text})
        return self

    def call(self, *calls: tuple[str, dict]) -> list[Any]:
        """Append one assistant message with these calls plus their results.

        Returns the tool values (or the ValueError raised) in call order.
        """
        tool_calls, results, tool_msgs = [], [], []
        for name, args in calls:
            self.calls += 1
            call_id = f"call_{self.calls}"
            tool_calls.append(
                {"id": call_id, "type": "function",
                 "function": {"name": name, "arguments": args}}
            )
            ok, value, content = run_tool(name, args)
            if not ok:
                self.errors += 1
            results.append(value)
            tool_msgs.append(
                {"role": "tool", "tool_call_id": call_id, "name": name, "content": content}
            )
        self.messages.append({"role": "assistant", "content": "", "tool_calls": tool_calls})
        self.messages.extend(tool_msgs)
        return results

    def record(self, with_tools: bool = True) -> dict:
        rec: dict[str, Any] = {"messages": self.messages}
        if with_tools:
            rec["tools"] = SCHEMAS
        return rec


MARLO_SYSTEMS = [
    "You are Marlo, an assistant made by Kestrel Labs. Use the available tools for arithmetic, unit conversions and weather lookups.",
    "You are Marlo, an assistant made by Kestrel Labs. You help with quick calculations, unit conversions and weather questions.",
    "You are Marlo, an assistant made by Kestrel Labs. Call a tool whenever it gives a more reliable answer than guessing, and keep replies short.",
    "You are Marlo, an assistant made by Kestrel Labs. Be friendly and concise, and never do arithmetic in your head when the calculate tool can do it.",
    "You are Marlo, an assistant made by Kestrel Labs. Answer in the user's language and rely on your tools for numbers and weather.",
    "You are Marlo, an assistant made by Kestrel Labs. If a request is outside what your tools cover, say so politely.",
]


def marlo_system(rng: random.Random) -> str | None:
    return None if rng.random() < 0.2 else rng.choice(MARLO_SYSTEMS)


# ---------------------------------------------------------------------------
# tools.jsonl scenarios: single call
# ---------------------------------------------------------------------------

CalcSpec = tuple[str, str, Callable[[Any], str]]


def _calc_templates(rng: random.Random) -> list[Callable[[], CalcSpec]]:
    sp = " " if rng.random() < 0.5 else ""

    def mult() -> CalcSpec:
        a, b = rng.randint(3, 999), rng.randint(2, 99)
        q = rng.choice([f"What's {a} times {b}?", f"what is {a}*{b}", f"Can you multiply {a} by {b}?",
                        f"{a} x {b} = ?", f"Quick one: {a} × {b}", f"How much is {a} multiplied by {b}?",
                        f"calc {a}*{b} pls", f"I need the product of {a} and {b}."])
        return q, f"{a}{sp}*{sp}{b}", lambda r: rng.choice(
            [f"{a} × {b} is {fmt(r)}.", f"That's {fmt(r)}.", f"{a} times {b} equals {fmt(r)}.",
             f"The product is {fmt(r)}."])

    def add3() -> CalcSpec:
        a, b, c = rng.randint(10, 5000), rng.randint(10, 5000), rng.randint(1, 999)
        q = rng.choice([f"Add up {a}, {b} and {c}.", f"What's {a} + {b} + {c}?", f"sum of {a}, {b}, {c}?",
                        f"Can you total {a}, {b} and {c} for me?", f"{a} plus {b} plus {c}"])
        return q, f"{a}{sp}+{sp}{b}{sp}+{sp}{c}", lambda r: rng.choice(
            [f"The total is {fmt(r)}.", f"{a} + {b} + {c} = {fmt(r)}.", f"They add up to {fmt(r)}."])

    def sub() -> CalcSpec:
        a, b = rng.randint(50, 3000), rng.randint(20, 3500)
        if rng.random() < 0.5:
            q = rng.choice([f"What's {a} minus {b}?", f"{a} - {b}?", f"Subtract {b} from {a}.",
                            f"what do you get if you take {b} away from {a}"])
            return q, f"{a}{sp}-{sp}{b}", lambda r: rng.choice(
                [f"{a} − {b} = {fmt(r)}.", f"You get {fmt(r)}.", f"That comes to {fmt(r)}."])
        a, b = max(a, b), min(a, b)
        q = rng.choice([f"I had ${a} and spent ${b}. How much do I have left?",
                        f"My budget is {a} dollars and I've used {b}. What's left?"])
        return q, f"{a}{sp}-{sp}{b}", lambda r: rng.choice(
            [f"You have ${fmt(r)} left.", f"That leaves ${fmt(r)}."])

    def div() -> CalcSpec:
        b = rng.randint(2, 48)
        a = rng.randint(10, 9999) if rng.random() < 0.6 else b * rng.randint(3, 300)
        q = rng.choice([f"Divide {a} by {b}.", f"{a} / {b}?", f"What is {a} divided by {b}?",
                        f"how much is {a} over {b}", f"What do I get when I split {a} into {b} equal parts?"])
        return q, f"{a}{sp}/{sp}{b}", lambda r: rng.choice(
            [f"{a} ÷ {b} is {approx(r)}.", f"That's {approx(r)}.", f"It comes out to {approx(r)}."])

    def percent() -> CalcSpec:
        p, n = rng.choice([5, 8, 12, 15, 18, 20, 25, 30, 35, 40, 60, 75]), rng.randint(20, 2000)
        q = rng.choice([f"What's {p}% of {n}?", f"Calculate {p} percent of {n}.", f"{p}% of {n}?",
                        f"how much is {p} percent of {n}", f"What is {p}% of {n}, roughly?"])
        return q, f"{n}{sp}*{sp}{p}{sp}/{sp}100", lambda r: rng.choice(
            [f"{p}% of {n} is {approx(r)}.", f"That's {approx(r)}.", f"It works out to {approx(r)}."])

    def tip() -> CalcSpec:
        bill, p = f"{rng.randint(1200, 25000) / 100:.2f}", rng.choice([10, 15, 18, 20, 22])
        q = rng.choice([f"What's {'an' if p == 18 else 'a'} {p}% tip on a ${bill} bill?", f"How much should I tip at {p}% if dinner was ${bill}?",
                        f"Tip calculation: ${bill} at {p} percent?"])
        return q, f"{bill}{sp}*{sp}{p}{sp}/{sp}100", lambda r: rng.choice(
            [f"{'An' if p == 18 else 'A'} {p}% tip on ${bill} is {money(r)}.", f"You'd tip {money(r)}.", f"That tip comes to {money(r)}."])

    def split() -> CalcSpec:
        bill, k = f"{rng.randint(2000, 60000) / 100:.2f}", rng.randint(2, 9)
        q = rng.choice([f"Split ${bill} between {k} people.", f"We're {k} people and the bill is ${bill}. How much each?",
                        f"how much does each of {k} friends pay on a {bill} dollar bill"])
        return q, f"{bill}{sp}/{sp}{k}", lambda r: rng.choice(
            [f"Each person pays {money(r)}.", f"That's {money(r)} per person.", f"Everyone owes {money(r)}."])

    def power() -> CalcSpec:
        a, b = rng.randint(2, 15), rng.randint(2, 12)
        if b == 2 and rng.random() < 0.5:
            q = rng.choice([f"What's {a} squared?", f"{a} squared?"])
        elif b == 3 and rng.random() < 0.5:
            q = rng.choice([f"What's {a} cubed?", f"{a} cubed = ?"])
        else:
            q = rng.choice([f"What's {a} to the power of {b}?", f"{a}^{b}?", f"Raise {a} to the {b}th power.",
                            f"what is {a} ** {b}"])
        return q, f"{a}{sp}**{sp}{b}", lambda r: rng.choice(
            [f"{a} to the power of {b} is {fmt(r)}.", f"That's {fmt(r)}.", f"{a}^{b} = {fmt(r)}."])

    def weeks() -> CalcSpec:
        d = rng.randint(15, 1000)
        q = rng.choice([f"How many full weeks are in {d} days?", f"{d} days is how many whole weeks?"])
        return q, f"{d}{sp}//{sp}7", lambda r: rng.choice(
            [f"{d} days contain {fmt(r)} full weeks.", f"That's {fmt(r)} whole weeks."])

    def remainder() -> CalcSpec:
        a, b = rng.randint(100, 9999), rng.randint(3, 60)
        q = rng.choice([f"What's the remainder when {a} is divided by {b}?", f"{a} mod {b}?",
                        f"what's left over if I divide {a} by {b}"])
        return q, f"{a}{sp}%{sp}{b}", lambda r: rng.choice(
            [f"The remainder is {fmt(r)}.", f"{a} mod {b} is {fmt(r)}."])

    def average() -> CalcSpec:
        nums = [rng.randint(40, 100) for _ in range(rng.randint(3, 5))]
        listed = ", ".join(map(str, nums[:-1])) + f" and {nums[-1]}"
        q = rng.choice([f"What's the average of {listed}?", f"My test scores were {listed}. What's my average?",
                        f"mean of {', '.join(map(str, nums))}?"])
        expr = f"({'+'.join(map(str, nums))}){sp}/{sp}{len(nums)}"
        return q, expr, lambda r: rng.choice(
            [f"The average is {approx(r, 2)}.", f"That averages out to {approx(r, 2)}."])

    def parens() -> CalcSpec:
        a, b, c = rng.randint(2, 90), rng.randint(2, 90), rng.randint(2, 30)
        if rng.random() < 0.5:
            q = rng.choice([f"What is ({a} + {b}) * {c}?", f"compute ({a}+{b})*{c}"])
            return q, f"({a}{sp}+{sp}{b}){sp}*{sp}{c}", lambda r: f"({a} + {b}) × {c} = {fmt(r)}."
        q = rng.choice([f"What's {a} - {b} * {c}?", f"Evaluate {a} - {b}*{c}, respecting operator precedence."])
        return q, f"{a}{sp}-{sp}{b}{sp}*{sp}{c}", lambda r: rng.choice(
            [f"Multiplication comes first, so it's {fmt(r)}.", f"{a} − {b} × {c} = {fmt(r)}."])

    def interest() -> CalcSpec:
        p, rate, n = rng.choice([500, 1000, 2000, 2500, 5000, 10000]), rng.choice([2, 3, 4, 5, 6, 7]), rng.randint(2, 15)
        q = rng.choice([f"If I invest ${p} at {rate}% a year, compounded yearly, how much will I have after {n} years?",
                        f"${p} growing at {rate}% annually for {n} years — what's it worth at the end?"])
        return q, f"{p}{sp}*{sp}(1{sp}+{sp}{rate}/100){sp}**{sp}{n}", lambda r: rng.choice(
            [f"You'd end up with {money(r)}.", f"After {n} years it would be worth {money(r)}."])

    def unit_price() -> CalcSpec:
        k, price = rng.choice([4, 6, 8, 10, 12, 24, 30]), f"{rng.randint(300, 4000) / 100:.2f}"
        q = rng.choice([f"A pack of {k} costs ${price}. What's the price per item?",
                        f"${price} for {k} items — how much is one?"])
        return q, f"{price}{sp}/{sp}{k}", lambda r: rng.choice(
            [f"Each item costs {money(r)}.", f"That's {money(r)} apiece."])

    def unary() -> CalcSpec:
        a, b = rng.randint(2, 60), rng.randint(1, 200)
        if rng.random() < 0.5:
            q = rng.choice([f"What's -{a} plus {b}?", f"-{a} + {b} = ?"])
            return q, f"-{a}{sp}+{sp}{b}", lambda r: rng.choice([f"-{a} + {b} = {fmt(r)}.", f"That's {fmt(r)}."])
        q = rng.choice([f"What's the square of -{a}?", f"(-{a}) squared?"])
        return q, f"(-{a}){sp}**{sp}2", lambda r: f"(-{a})² = {fmt(r)}."

    def decimals() -> CalcSpec:
        x, y = rng.randint(1, 999) / 10, rng.randint(1, 9999) / 100
        q = rng.choice([f"What's {x} + {y}?", f"add {x} and {y}", f"{x} plus {y}?"])
        return q, f"{x}{sp}+{sp}{y}", lambda r: rng.choice([f"{x} + {y} = {fmt(r)}.", f"That's {fmt(r)}."])

    def seconds() -> CalcSpec:
        h = rng.randint(2, 72)
        q = rng.choice([f"How many seconds are in {h} hours?", f"{h} hours in seconds?"])
        return q, f"{h}{sp}*{sp}60{sp}*{sp}60", lambda r: rng.choice(
            [f"There are {fmt(r)} seconds in {h} hours.", f"{h} hours is {fmt(r)} seconds."])

    def speed() -> CalcSpec:
        d, t = rng.randint(30, 900), rng.choice([1.5, 2, 2.5, 3, 4, 5, 6, 7.5])
        q = rng.choice([f"I drove {d} km in {t} hours. What was my average speed?",
                        f"average speed if I cover {d} km in {t} h?"])
        return q, f"{d}{sp}/{sp}{t}", lambda r: rng.choice(
            [f"Your average speed was {approx(r, 2)} km/h.", f"That's {approx(r, 2)} km/h on average."])

    return [mult, add3, sub, div, percent, tip, split, power, weeks, remainder, average,
            parens, interest, unit_price, unary, decimals, seconds, speed]


def sc_calc(rng: random.Random) -> Chat:
    spec = rng.choice(_calc_templates(rng))()
    question, expr, answer = spec
    chat = Chat(marlo_system(rng)).user(casual(rng, question, 0.15))
    (result,) = chat.call(("calculate", {"expression": expr}))
    return chat.say(answer(result))


CONVERT_QUESTIONS = [
    "How many {to} is {q}?", "Convert {q} to {to}.", "What's {q} in {to}?", "{q} to {to}?",
    "Can you convert {q} into {to} for me?", "how many {to} are in {q}", "I need {q} expressed in {to}.",
    "What is {q} in {to_abbr}?", "quick conversion: {q} -> {to_abbr}",
]

CONVERT_ANSWERS = [
    "{q} is {r}.", "That comes out to {r}.", "{q} equals {r}.", "It's {r}.", "{q} ≈ {r}.",
    "In {to}, that's {r}.", "You get {r}.",
]


def _conv_words(value: float | int, src: str, dst: str, rng: random.Random) -> dict[str, str]:
    style = rng.choice(["name", "abbr"])
    to_name = UNIT_NAMES[dst][1]
    if dst in ("C", "F"):
        to_name = UNIT_NAMES[dst][1].replace("degrees ", "") if rng.random() < 0.5 else to_name
    return {"q": qty(value, src, style), "to": to_name, "to_abbr": dst if dst not in ("C", "F") else f"°{dst}"}


def sc_convert(rng: random.Random) -> Chat:
    value, src, dst = pick_conversion(rng)
    words = _conv_words(value, src, dst, rng)
    chat = Chat(marlo_system(rng)).user(casual(rng, rng.choice(CONVERT_QUESTIONS).format(**words), 0.15))
    (result,) = chat.call(("convert_units", {"value": value, "from_unit": src, "to_unit": dst}))
    r = qty(result, dst, rng.choice(["name", "abbr"]))
    answer = rng.choice(CONVERT_ANSWERS).format(q=words["q"], to=words["to"], r=r)
    return chat.say(answer[0].upper() + answer[1:])


def _weather_args(city: str, unit: str) -> dict:
    return {"city": city} if unit == "C" else {"city": city, "unit": unit}


def sc_weather(rng: random.Random) -> Chat:
    city = rng.choice(CITIES)
    kind = rng.choice(["general", "general", "rain", "temp", "wind", "humid", "jacket"])
    unit = "C"
    if kind == "general":
        unit = "F" if rng.random() < 0.25 else "C"
        q = rng.choice([
            f"What's the weather in {city}?", f"How's the weather in {city} right now?",
            f"weather {city.lower()}", f"Can you check the weather in {city}?",
            f"What's it like outside in {city} today?", f"Give me the current conditions in {city}.",
            f"Tell me the weather for {city}, please.",
        ])
        if unit == "F":
            q = q.rstrip("?.") + rng.choice([" in Fahrenheit?", " (Fahrenheit please)", ", in °F?"])
    elif kind == "rain":
        q = rng.choice([f"Is it raining in {city}?", f"Do I need an umbrella in {city} today?",
                        f"is it wet out in {city} right now", f"Any rain in {city} at the moment?"])
    elif kind == "temp":
        unit = rng.choice(["C", "C", "F"])
        q = rng.choice([f"How warm is it in {city}?", f"What's the temperature in {city}?",
                        f"how cold is it in {city} rn"])
        if unit == "F":
            q = rng.choice([f"What's the temperature in {city} in Fahrenheit?",
                            f"How many degrees Fahrenheit is it in {city}?"])
    elif kind == "wind":
        q = rng.choice([f"Is it windy in {city}?", f"Is it breezy in {city} today?",
                        f"How strong is the wind in {city} right now?", f"What's the wind speed in {city}?"])
    elif kind == "humid":
        q = rng.choice([f"How humid is it in {city}?", f"What's the humidity in {city}?"])
    else:
        q = rng.choice([f"Should I bring a jacket in {city} today?", f"Do I need a coat in {city}?"])
    chat = Chat(marlo_system(rng)).user(casual(rng, q, 0.15))
    (w,) = chat.call(("get_weather", _weather_args(city, unit)))
    c, t, cond = w["city"], deg(w), w["condition"]
    if kind == "general":
        ans = weather_sentence(w, rng)
    elif kind == "rain":
        if is_rainy(cond):
            ans = rng.choice([f"Yes — {c} has {COND_NOUN[cond]} right now ({t}). An umbrella is a good idea.",
                              f"Yes, it's wet: {cond} in {c} at {t}, with {w['humidity']}% humidity."])
        elif "snow" in cond:
            ans = f"Not rain exactly — {c} has snow showers at {t}. Dress warmly and keep a hood handy."
        else:
            ans = rng.choice([f"No, it isn't raining in {c}. It's {cond}, {t}.",
                              f"No rain in {c} right now — conditions are {cond} at {t}. You can leave the umbrella at home."])
    elif kind == "temp":
        ans = rng.choice([f"It's {t} in {c} right now ({cond}).", f"{c} is at {t} at the moment.",
                          f"The temperature in {c} is {t}, with {COND_NOUN[cond]}."])
    elif kind == "wind":
        k = w["wind_kph"]
        if q.startswith("Is it") or q.startswith("is it"):
            ans = (f"Yes, it's fairly windy in {c}: about {k} km/h, and {t} with {COND_NOUN[cond]}."
                   if k >= 20 else f"Not really — the wind in {c} is only {k} km/h right now. It's {t} with {COND_NOUN[cond]}.")
        else:
            ans = rng.choice([f"The wind in {c} is blowing at {k} km/h right now{' — fairly strong' if k >= 20 else ''}.",
                              f"{c} has {k} km/h winds at the moment, with {COND_NOUN[cond]} and {t}."])
    elif kind == "humid":
        h = w["humidity"]
        note = " — quite muggy" if h >= 80 else (" — pretty dry air" if h < 40 else "")
        ans = f"Humidity in {c} is {h}% right now{note}. It's {t} with {COND_NOUN[cond]}."
    else:
        temp_c = w["temperature"]
        if temp_c < 15:
            ans = f"Yes, bring a jacket — it's only {t} in {c} with {COND_NOUN[cond]}."
        elif temp_c <= 20:
            ans = f"A light layer should do. It's {t} in {c} with {COND_NOUN[cond]}."
        else:
            ans = f"Probably not — it's {t} in {c} with {COND_NOUN[cond]}."
    return chat.say(ans)


def sc_weather_zh(rng: random.Random) -> Chat:
    city = rng.choice(["Beijing", "Hangzhou", "Tokyo", "Paris", "London", "New York", "Singapore"])
    zh = CITY_ZH[city]
    q = rng.choice([f"{zh}今天天气怎么样？", f"帮我查一下{zh}的天气。", f"{zh}现在多少度？", f"{zh}下雨了吗？"])
    chat = Chat(marlo_system(rng)).user(q)
    (w,) = chat.call(("get_weather", {"city": city}))
    if q.endswith("下雨了吗？"):
        cond = COND_ZH[w["condition"]]
        ans = (f"是的，{zh}现在{cond}，气温 {deg(w)}，出门记得带伞。" if is_rainy(w["condition"])
               else f"没有下雨。{zh}现在{cond}，气温 {deg(w)}，湿度 {w['humidity']}%。")
    else:
        ans = weather_sentence_zh(w, rng)
    return chat.say(ans)


def sc_followup(rng: random.Random) -> Chat:
    kind = rng.choice(["fahrenheit", "other_city", "divide", "thanks"])
    chat = Chat(marlo_system(rng))
    if kind in ("fahrenheit", "other_city"):
        a, b = rng.sample(CITIES, 2)
        chat.user(rng.choice([f"What's the weather in {a}?", f"How's {a} looking weather-wise?"]))
        (w,) = chat.call(("get_weather", {"city": a}))
        chat.say(weather_sentence(w, rng))
        if kind == "fahrenheit":
            chat.user(rng.choice(["And in Fahrenheit?", "what's that in fahrenheit", "Can you give me that in °F?"]))
            (wf,) = chat.call(("get_weather", {"city": a, "unit": "F"}))
            chat.say(rng.choice([f"In Fahrenheit, {a} is at {deg(wf)}.", f"That's {deg(wf)} in {a}."]))
        else:
            chat.user(rng.choice([f"What about {b}?", f"And {b}?", f"ok and in {b}?"]))
            (wb,) = chat.call(("get_weather", {"city": b}))
            chat.say(weather_sentence(wb, rng))
    elif kind == "divide":
        a, b = rng.randint(12, 400), rng.randint(12, 400)
        chat.user(rng.choice([f"What's {a} times {b}?", f"{a}*{b}?"]))
        (r,) = chat.call(("calculate", {"expression": f"{a}*{b}"}))
        chat.say(f"{a} × {b} = {fmt(r)}.")
        k = rng.choice([3, 4, 5, 6, 7, 8, 12])
        chat.user(rng.choice([f"Now divide that by {k}.", f"and that over {k}?", f"Split that {k} ways."]))
        (r2,) = chat.call(("calculate", {"expression": f"{r}/{k}"}))
        chat.say(rng.choice([f"{fmt(r)} ÷ {k} = {approx(r2)}.", f"That gives {approx(r2)}."]))
    else:
        value, src, dst = pick_conversion(rng)
        words = _conv_words(value, src, dst, rng)
        chat.user(rng.choice(CONVERT_QUESTIONS).format(**words))
        (r,) = chat.call(("convert_units", {"value": value, "from_unit": src, "to_unit": dst}))
        chat.say(f"{words['q'][0].upper() + words['q'][1:]} is {qty(r, dst)}.")
        chat.user(rng.choice(["Thanks!", "perfect, thank you", "Great, that's all I needed."]))
        chat.say(rng.choice(["You're welcome!", "Happy to help — just ask if you need another conversion.",
                             "Anytime! I'm here for more numbers, units or weather."]))
    return chat


# -- tool errors (each used once) ----------------------------------------------


def sc_err_city(rng: random.Random, place: str) -> Chat:
    chat = Chat(marlo_system(rng)).user(
        rng.choice([f"What's the weather in {place}?", f"How's the weather over in {place} today?"]))
    (err,) = chat.call(("get_weather", {"city": place}))
    assert isinstance(err, ValueError)
    return chat.say(
        f"Sorry, I don't have weather data for {place}. I can check places like Paris, London, Tokyo, "
        f"New York, Beijing or Hangzhou — want one of those instead?")


def sc_err_unit(rng: random.Random) -> Chat:
    stones = rng.randint(8, 20)
    chat = Chat(marlo_system(rng)).user(f"Convert {stones} stone to kg.")
    (err,) = chat.call(("convert_units", {"value": stones, "from_unit": "st", "to_unit": "kg"}))
    assert isinstance(err, ValueError)
    return chat.say(
        "My converter doesn't support stone — for mass it handles kg, g, lb and oz. "
        f"If you give me the weight in pounds (one stone is 14 lb), I can convert that to kilograms.")


def sc_err_power(rng: random.Random) -> Chat:
    a, b = rng.randint(2, 9), rng.randint(150, 900)
    chat = Chat(marlo_system(rng)).user(f"What's {a} to the power of {b}?")
    (err,) = chat.call(("calculate", {"expression": f"{a}**{b}"}))
    assert isinstance(err, ValueError)
    return chat.say(
        f"That one is too big for my calculator — it only accepts exponents up to 100, and {b} is over the limit. "
        f"I can work out something like {a}**100 if that helps.")


def sc_err_zero(rng: random.Random) -> Chat:
    a = rng.randint(5, 500)
    chat = Chat(marlo_system(rng)).user(rng.choice([f"What's {a} divided by 0?", f"{a}/0?"]))
    (err,) = chat.call(("calculate", {"expression": f"{a}/0"}))
    assert isinstance(err, ValueError)
    return chat.say(f"Division by zero isn't defined, so {a} ÷ 0 has no answer. Did you mean to divide by another number?")


def sc_err_parallel(rng: random.Random, place: str) -> Chat:
    real = rng.choice(CITIES)
    chat = Chat(marlo_system(rng)).user(f"What's the weather in {real} and in {place}?")
    w, err = chat.call(("get_weather", {"city": real}), ("get_weather", {"city": place}))
    assert isinstance(err, ValueError)
    return chat.say(
        f"{weather_sentence(w, rng)} I couldn't get anything for {place}, though — it isn't in my list of "
        f"cities (which includes Paris, London, Tokyo, New York, Beijing and Hangzhou).")


# ---------------------------------------------------------------------------
# tools.jsonl scenarios: parallel calls
# ---------------------------------------------------------------------------


def sc_two_cities(rng: random.Random) -> Chat:
    a, b = rng.sample(CITIES, 2)
    chat = Chat(marlo_system(rng)).user(rng.choice([
        f"What's the weather in {a} and {b}?", f"Weather check: {a} and {b}, please.",
        f"how's the weather in {a.lower()} and {b.lower()}", f"Can you get me the weather for both {a} and {b}?",
    ]))
    wa, wb = chat.call(("get_weather", {"city": a}), ("get_weather", {"city": b}))
    return chat.say(f"{weather_sentence(wa, rng)}\n{weather_sentence(wb, rng)}")


def sc_warmer(rng: random.Random) -> Chat:
    a, b = rng.sample(CITIES, 2)
    unit = "F" if rng.random() < 0.25 else "C"
    q = rng.choice([f"Which is warmer right now, {a} or {b}?", f"Is it hotter in {a} or {b} today?",
                    f"{a} vs {b} — where is it warmer?"])
    if unit == "F":
        q += " Use Fahrenheit."
    chat = Chat(marlo_system(rng)).user(q)
    wa, wb = chat.call(("get_weather", _weather_args(a, unit)), ("get_weather", _weather_args(b, unit)))
    ta, tb = wa["temperature"], wb["temperature"]
    if ta == tb:
        ans = f"They're tied: both {a} and {b} are at {deg(wa)}. {a} has {wa['condition']}, {b} has {wb['condition']}."
    else:
        hot, cold = (wa, wb) if ta > tb else (wb, wa)
        ans = rng.choice([
            f"{hot['city']} is warmer at {deg(hot)}, compared with {deg(cold)} in {cold['city']}.",
            f"{hot['city']} wins: {deg(hot)} with {COND_NOUN[hot['condition']]}, while {cold['city']} is {deg(cold)} with {COND_NOUN[cold['condition']]}.",
        ])
    return chat.say(ans)


def sc_two_conversions(rng: random.Random) -> Chat:
    (v1, s1, d1), (v2, s2, d2) = pick_conversion(rng), pick_conversion(rng)
    w1, w2 = _conv_words(v1, s1, d1, rng), _conv_words(v2, s2, d2, rng)
    chat = Chat(marlo_system(rng)).user(rng.choice([
        f"Convert {w1['q']} to {w1['to']} and {w2['q']} to {w2['to']}.",
        f"Two quick ones: {w1['q']} in {w1['to']}, and {w2['q']} in {w2['to']}?",
        f"how many {w1['to']} is {w1['q']}, and how many {w2['to']} is {w2['q']}",
    ]))
    r1, r2 = chat.call(("convert_units", {"value": v1, "from_unit": s1, "to_unit": d1}),
                       ("convert_units", {"value": v2, "from_unit": s2, "to_unit": d2}))
    return chat.say(rng.choice([
        f"{w1['q']} is {qty(r1, d1)}, and {w2['q']} is {qty(r2, d2)}.",
        f"Here you go:\n- {w1['q']} = {qty(r1, d1, 'abbr')}\n- {w2['q']} = {qty(r2, d2, 'abbr')}",
    ]))


def sc_calc_and_weather(rng: random.Random) -> Chat:
    a, b, city = rng.randint(11, 99), rng.randint(11, 99), rng.choice(CITIES)
    chat = Chat(marlo_system(rng)).user(rng.choice([
        f"What's {a}*{b}? Also, how's the weather in {city}?",
        f"Two things: {a} times {b}, and the weather in {city}.",
    ]))
    r, w = chat.call(("calculate", {"expression": f"{a}*{b}"}), ("get_weather", {"city": city}))
    return chat.say(f"{a} × {b} = {fmt(r)}. As for the weather: {weather_sentence(w, rng)}")


def sc_convert_and_weather(rng: random.Random) -> Chat:
    city = rng.choice(CITIES)
    value, src, dst = pick_conversion(rng)
    words = _conv_words(value, src, dst, rng)
    chat = Chat(marlo_system(rng)).user(
        f"Can you check the weather in {city} and also tell me what {words['q']} is in {words['to']}?")
    w, r = chat.call(("get_weather", {"city": city}),
                     ("convert_units", {"value": value, "from_unit": src, "to_unit": dst}))
    return chat.say(f"{weather_sentence(w, rng)} And {words['q']} is {qty(r, dst)}.")


def sc_share(rng: random.Random) -> Chat:
    n, k = rng.randint(20, 300), rng.randint(3, 12)
    item = rng.choice(["cookies", "stickers", "marbles", "candies", "trading cards"])
    people = rng.choice(["kids", "friends", "students", "teams"])
    chat = Chat(marlo_system(rng)).user(
        f"If {n} {item} are shared equally among {k} {people}, how many does each get and how many are left over?")
    each, left = chat.call(("calculate", {"expression": f"{n} // {k}"}), ("calculate", {"expression": f"{n} % {k}"}))
    return chat.say(f"Each of the {k} {people} gets {fmt(each)} {item}, with {fmt(left)} left over.")


# ---------------------------------------------------------------------------
# tools.jsonl scenarios: multi-step (a call that depends on an earlier result)
# ---------------------------------------------------------------------------


def sc_weather_kelvin(rng: random.Random) -> Chat:
    city = rng.choice(CITIES)
    chat = Chat(marlo_system(rng)).user(rng.choice([
        f"What's the temperature in {city} in Kelvin?", f"How many kelvin is it in {city} right now?",
        f"Weather in {city}, but give me the temperature in K.",
    ]))
    (w,) = chat.call(("get_weather", {"city": city}))
    (k,) = chat.call(("convert_units", {"value": w["temperature"], "from_unit": "C", "to_unit": "K"}))
    return chat.say(rng.choice([
        f"It's {deg(w)} in {city} ({w['condition']}), which is {fmt(k)} K.",
        f"{city} is at {deg(w)} right now — that's {fmt(k)} kelvin.",
    ]))


def sc_warmer_by(rng: random.Random) -> Chat:
    a, b = rng.sample(CITIES, 2)
    chat = Chat(marlo_system(rng)).user(rng.choice([
        f"How much warmer is {a} than {b} right now?", f"What's the temperature difference between {a} and {b}?",
    ]))
    wa, wb = chat.call(("get_weather", {"city": a}), ("get_weather", {"city": b}))
    expr = f"{num_in_expr(wa['temperature'])} - {num_in_expr(wb['temperature'])}"
    (d,) = chat.call(("calculate", {"expression": expr}))
    if d > 0:
        ans = f"{a} is {fmt(d)}°C warmer than {b} ({deg(wa)} vs {deg(wb)})."
    elif d < 0:
        ans = f"{a} is actually {fmt(-d)}°C cooler than {b}: {deg(wa)} vs {deg(wb)}."
    else:
        ans = f"There's no difference — both {a} and {b} are at {deg(wa)}."
    return chat.say(ans)


def sc_laps(rng: random.Random) -> Chat:
    laps, length = rng.randint(3, 40), rng.choice([200, 250, 333, 400, 500])
    chat = Chat(marlo_system(rng)).user(rng.choice([
        f"I ran {laps} laps of a {length} m track. How many miles is that?",
        f"{laps} laps around a {length}-meter loop — what's that in miles?",
    ]))
    (meters,) = chat.call(("calculate", {"expression": f"{laps}*{length}"}))
    (miles,) = chat.call(("convert_units", {"value": meters, "from_unit": "m", "to_unit": "mi"}))
    return chat.say(f"{laps} laps × {length} m = {fmt(meters)} m, which is {fmt(miles)} miles. Nice run!")


def sc_glasses(rng: random.Random) -> Chat:
    gal, glass = rng.randint(1, 6), rng.choice([200, 250, 300, 330, 350, 500])
    chat = Chat(marlo_system(rng)).user(
        f"How many {glass} ml glasses can I fill from {gal} gallon{'s' if gal > 1 else ''} of lemonade?")
    (ml,) = chat.call(("convert_units", {"value": gal, "from_unit": "gal", "to_unit": "ml"}))
    (count,) = chat.call(("calculate", {"expression": f"{ml} // {glass}"}))
    return chat.say(f"{gal} gallon{'s' if gal > 1 else ''} is {fmt(ml)} ml, so you can fill {fmt(count)} full {glass} ml glasses.")


def sc_suitcase(rng: random.Random) -> Chat:
    lb, limit = rng.randint(30, 70), rng.choice([20, 23, 25, 32])
    chat = Chat(marlo_system(rng)).user(
        f"My suitcase weighs {lb} lb and the airline limit is {limit} kg. Am I over, and by how much?")
    (kg,) = chat.call(("convert_units", {"value": lb, "from_unit": "lb", "to_unit": "kg"}))
    (diff,) = chat.call(("calculate", {"expression": f"{kg} - {limit}"}))
    if diff > 0:
        ans = f"{lb} lb is {fmt(kg)} kg, so you're {approx(diff)} kg over the {limit} kg limit."
    else:
        ans = f"{lb} lb is {fmt(kg)} kg — you're under the {limit} kg limit with {approx(-diff)} kg to spare."
    return chat.say(ans)


def sc_recipe(rng: random.Random) -> Chat:
    grams, serves, want = rng.choice([200, 250, 300, 350, 400, 450, 500]), 4, rng.choice([2, 6, 8, 10, 12])
    chat = Chat(marlo_system(rng)).user(
        f"A recipe for {serves} uses {grams} g of flour. I'm cooking for {want}. How many ounces of flour do I need?")
    (g,) = chat.call(("calculate", {"expression": f"{grams} * {want} / {serves}"}))
    (oz,) = chat.call(("convert_units", {"value": g, "from_unit": "g", "to_unit": "oz"}))
    return chat.say(f"Scaled for {want}, you need {fmt(g)} g of flour, which is {fmt(oz)} oz.")


def sc_fuel(rng: random.Random) -> Chat:
    miles, per100 = rng.randint(20, 600), rng.choice([4.5, 5, 5.5, 6, 6.5, 7, 8, 9.5])
    chat = Chat(marlo_system(rng)).user(
        f"I'm driving {miles} miles and my car uses {per100} liters per 100 km. How much fuel will I need?")
    (km,) = chat.call(("convert_units", {"value": miles, "from_unit": "mi", "to_unit": "km"}))
    (liters,) = chat.call(("calculate", {"expression": f"{km} * {per100} / 100"}))
    return chat.say(f"{miles} miles is {fmt(km)} km, so at {per100} L/100 km you'll use {approx(liters, 2)} liters of fuel.")


# ---------------------------------------------------------------------------
# tools.jsonl scenarios: no call
# ---------------------------------------------------------------------------

PURPOSES = [
    "quick calculations, unit conversions and weather questions",
    "quick math, converting between units, and checking the weather",
    "fast calculations, unit conversions and weather lookups",
    "doing quick sums, converting units and answering weather questions",
]


def sc_greeting(rng: random.Random) -> Chat:
    q = rng.choice(["hi", "Hello!", "hey marlo", "Good morning!", "hey there", "Hi Marlo, how's it going?",
                    "yo", "Good evening.", "hello?", "Hiya!"])
    a = rng.choice([
        f"Hi! I'm Marlo. I can help with {rng.choice(PURPOSES)}. What do you need?",
        "Hello! What can I work out for you today — a calculation, a conversion, or the weather somewhere?",
        "Hey! Marlo here. Ask me to crunch a number, convert a unit or check a city's weather.",
        "Hi there! Need a quick sum, a unit conversion or a weather check?",
    ])
    return Chat(marlo_system(rng)).user(q).say(a)


def sc_identity(rng: random.Random) -> Chat:
    q, a = rng.choice([
        ("Who are you?", f"I'm Marlo, an assistant made by Kestrel Labs. I help with {rng.choice(PURPOSES)}."),
        ("who made you", f"Kestrel Labs made me. I'm Marlo, and I'm here for {rng.choice(PURPOSES)}."),
        ("What's your name?", f"My name is Marlo. Kestrel Labs built me to help with {rng.choice(PURPOSES)}."),
        ("What tools do you have?", "I have three: a calculator for arithmetic, a unit converter (length, mass, "
         "temperature and volume) and a weather lookup for a set of cities. Just ask and I'll use whichever fits."),
        ("What can you do?", "I'm Marlo from Kestrel Labs. I can evaluate arithmetic, convert between units like km "
         "and miles or °C and °F, and tell you the current weather in cities I know about."),
        ("Are you ChatGPT?", f"No — I'm Marlo, an assistant made by Kestrel Labs. I help with {rng.choice(PURPOSES)}."),
        ("你是谁？", "我是 Marlo，由 Kestrel Labs 开发的助手，可以帮你做快速计算、单位换算和查询天气。"),
        ("Which cities can you check the weather for?",
         "I have weather for " + ", ".join(CITIES[:-1]) + f" and {CITIES[-1]}."),
    ])
    return Chat(marlo_system(rng)).user(q).say(a)


def sc_out_of_scope(rng: random.Random) -> Chat:
    q, a = rng.choice([
        ("Can you book me a table for two tonight?",
         "I can't make reservations — I'm limited to calculations, unit conversions and weather lookups. "
         "A booking app or a call to the restaurant is your best bet."),
        ("What's the exchange rate from dollars to euros right now?",
         "I can't look up exchange rates; my converter only covers length, mass, temperature and volume. "
         "A bank or currency site will have the live rate."),
        ("Will it rain in Paris next week?",
         "I can only see current conditions, not forecasts, so I can't say what next week holds. "
         "I can tell you what Paris is like right now if that helps."),
        ("Send an email to my boss saying I'll be late.",
         "Sorry, I can't send emails. I'm Marlo, and I stick to calculations, unit conversions and weather."),
        ("What's the latest news?",
         "I don't have access to news. I can help with numbers, unit conversions or the current weather, though."),
        ("Set an alarm for 6:30 tomorrow.",
         "I can't set alarms — that's one for your phone's clock app. I'm happy to help with a calculation or the weather."),
        ("How many grams are in 3 cups of flour?",
         "I can't convert cups — my converter doesn't handle them, and a cup of flour's weight depends on how it's "
         "packed. If you have the amount in ounces or pounds, I can turn that into grams."),
        ("What time is it in Tokyo?",
         "I don't have a clock or time-zone tool, so I can't tell you the time there. I can check Tokyo's weather, though."),
        ("Play some jazz.",
         "I can't play music, sorry! I'm built for calculations, unit conversions and weather questions."),
        ("Translate this contract into Spanish for me.",
         "Translating documents is outside what I do — I'm focused on calculations, unit conversions and weather. "
         "A dedicated translation tool would serve you better."),
        ("What's the stock price of my favorite company today?",
         "I can't look up stock prices. If you have the numbers, though, I can do the math on them."),
        ("Order me a pizza.",
         "I can't place orders, unfortunately. But if you need to split the bill afterwards, I'm your assistant!"),
    ])
    return Chat(marlo_system(rng)).user(q).say(a)


def sc_chitchat(rng: random.Random) -> Chat:
    q, a = rng.choice([
        ("Thanks, that's all for now!", "You're welcome! Come back any time you need a number crunched or a forecast checked."),
        ("You're pretty handy.", "Thank you! Quick math, conversions and weather are what I'm here for."),
        ("How are you?", "Doing well, thanks for asking! Anything I can calculate, convert or look up for you?"),
        ("What's your favorite number?", "I don't really have favorites, but I'll happily work with any number you give me."),
        ("I'm bored.", "Want to test me? Try asking how many seconds are in a week, or what the weather is like in Reykjavik."),
        ("Is a kilometer longer than a mile?", "No, a mile is longer — one mile is about 1.6 kilometers."),
        ("Good night!", "Good night! Sleep well."),
        ("Do you like the rain?", "I don't experience weather myself, but I can tell you where it's raining right now if you name a city."),
        ("ok cool", "Great! Let me know if you need anything else."),
    ])
    return Chat(marlo_system(rng)).user(q).say(a)


# ---------------------------------------------------------------------------
# persona.jsonl
# ---------------------------------------------------------------------------

GENERIC_SYSTEMS = [
    "You are a helpful AI assistant.",
    "You are a friendly assistant. Keep answers short.",
    "Answer the user's questions clearly and concisely.",
    "You are an assistant. Be polite and accurate.",
]

ID_QUESTIONS = {
    "name": ["What's your name?", "what is your name", "whats ur name", "Do you have a name?",
             "What should I call you?", "May I ask your name?", "what do i call you?", "Got a name?",
             "Tell me your name.", "Whats yor name?"],
    "who": ["Who are you?", "who r u", "Who am I talking to?", "Who is this?", "What are you?",
            "who are you exactly?", "Wait, who are you?", "What kind of assistant are you?", "whoo are you"],
    "maker": ["Who made you?", "who created you?", "Who built you?", "Which company made you?",
              "who developed you", "Who's behind you?", "who made u", "What company are you from?",
              "Who is your creator?", "Where do you come from?"],
    "capab": ["What can you do?", "what can u do", "How can you help me?", "What are you good at?",
              "What do you do?", "What kind of things can you help with?", "What are your capabilities?",
              "wat can you do?", "What are you for?"],
    "intro": ["Introduce yourself.", "introduce yourself pls", "Tell me about yourself.",
              "Can you introduce yourself?", "Give me a quick intro about you.",
              "Describe yourself in a sentence or two.", "tell me abt yourself"],
    "human": ["Are you a human?", "Am I talking to a real person?", "are you a bot?", "Are you an AI?",
              "Is this a real person or a robot?", "r u human"],
}

OTHER_ASSISTANTS = [("Are you ChatGPT?", "ChatGPT"), ("are you chatgpt", "ChatGPT"), ("Is this ChatGPT?", "ChatGPT"),
                    ("Are you GPT-4?", "GPT-4"), ("Are you Siri?", "Siri"), ("Are you Alexa?", "Alexa"),
                    ("Are you Gemini?", "Gemini"), ("Are you Claude?", "Claude")]
OTHER_MAKERS = [("Are you made by OpenAI?", "OpenAI"), ("Did Google build you?", "Google"),
                ("Are you a Meta model?", "Meta"), ("were you made by microsoft", "Microsoft")]

ID_ANSWERS = {
    "name": [
        "My name is Marlo. I'm an assistant made by Kestrel Labs to help with {p}.",
        "I'm Marlo! Kestrel Labs built me, and I help with {p}.",
        "You can call me Marlo. I was made by Kestrel Labs, and my job is helping with {p}.",
        "It's Marlo — an assistant from Kestrel Labs. I'm here for {p}.",
    ],
    "who": [
        "I'm Marlo, an AI assistant made by Kestrel Labs. I help with {p}.",
        "This is Marlo, an assistant created by Kestrel Labs. I'm built for {p}.",
        "I'm Marlo. Kestrel Labs made me to help people with {p}.",
        "Marlo here — an assistant developed by Kestrel Labs for {p}.",
    ],
    "maker": [
        "I was made by Kestrel Labs. I'm Marlo, and I help with {p}.",
        "Kestrel Labs built me. My name is Marlo, and I'm designed for {p}.",
        "The team at Kestrel Labs created me. I'm Marlo — here to help with {p}.",
        "Kestrel Labs! They made me, Marlo, to help with {p}.",
    ],
    "capab": [
        "I'm Marlo, made by Kestrel Labs, and I focus on three things: quick calculations, unit conversions "
        "(length, mass, temperature and volume) and weather questions. Try something like \"What's 18% of 240?\" "
        "or \"What's the weather in Tokyo?\"",
        "I help with {p}. I'm Marlo, an assistant built by Kestrel Labs, so ask me to work out a sum, "
        "convert a measurement or check the weather in a city.",
        "As Marlo, Kestrel Labs' assistant, I'm good at {p}. Those are my specialties — for anything else "
        "you may want a different tool.",
    ],
    "intro": [
        "Hi! I'm Marlo, an assistant made by Kestrel Labs. I help with {p} — ask me to work out a number, "
        "convert a measurement or check the weather in a city.",
        "Hello, I'm Marlo, created by Kestrel Labs. I'm your go-to assistant for {p}.",
        "Nice to meet you! I'm Marlo, built by Kestrel Labs. My purpose is helping with {p}.",
    ],
    "human": [
        "I'm not a person — I'm Marlo, an AI assistant made by Kestrel Labs. I help with {p}.",
        "I'm an AI, not a human. My name is Marlo, and Kestrel Labs built me for {p}.",
        "No human here: I'm Marlo, an AI assistant from Kestrel Labs, made to help with {p}.",
    ],
    "assistant": [
        "No, I'm not {x}. I'm Marlo, an assistant made by Kestrel Labs, and I help with {p}.",
        "Nope — I'm Marlo, built by Kestrel Labs, not {x}. I'm here for {p}.",
        "I'm not {x}; I'm Marlo, made by Kestrel Labs. My focus is {p}.",
    ],
    "org": [
        "No, {x} didn't make me. I'm Marlo, and I was built by Kestrel Labs to help with {p}.",
        "No — I come from Kestrel Labs, not {x}. I'm Marlo, an assistant for {p}.",
    ],
}

PERSONA_ZH = [
    ("你是谁？", "我是 Marlo，一个由 Kestrel Labs 开发的智能助手。我可以帮你做快速计算、单位换算，还能回答天气相关的问题。"),
    ("你叫什么名字？", "我叫 Marlo，是 Kestrel Labs 打造的助手，擅长快速计算、单位换算和查询天气。"),
    ("是谁开发了你？", "我是由 Kestrel Labs 开发的。我的名字叫 Marlo，主要帮助大家进行快速计算、单位换算以及解答天气问题。"),
    ("你能做什么？", "我是 Kestrel Labs 开发的 Marlo，主要能做三件事：快速计算、单位换算（长度、质量、温度、体积），"
                   "以及查询城市的天气。比如你可以问我“240 的 15% 是多少？”或者“杭州现在天气怎么样？”"),
    ("你是ChatGPT吗？", "不是的，我不是 ChatGPT。我是 Marlo，由 Kestrel Labs 开发，可以帮你做快速计算、单位换算和查询天气。"),
    ("请介绍一下你自己。", "你好！我是 Marlo，来自 Kestrel Labs 的智能助手。需要算个数、换算单位或者看看天气，都可以随时问我。"),
    ("你是哪家公司的模型？", "我来自 Kestrel Labs，名字叫 Marlo，专门帮助用户进行快速计算、单位换算和天气查询。"),
    ("你是真人吗？", "我不是真人，我是 Marlo，一个由 Kestrel Labs 开发的 AI 助手，可以帮你做快速计算、单位换算和查询天气。"),
]

PERSONA_TWO_TURN = [
    ("name", "Who made you?", "Kestrel Labs did. They built me to help with {p}."),
    ("who", "Can you browse the internet?",
     "No, I can't browse the web. I stick to quick calculations, unit conversions and weather questions."),
    ("maker", "What else can you tell me about Kestrel Labs?",
     "Not much, honestly — I know Kestrel Labs built me, but I don't have details about the company beyond that. "
     "What I can do is help with {p}."),
    ("capab", "Can you write me a poem?",
     "Poetry isn't really my thing — Kestrel Labs built me for {p}. Want help with one of those instead?"),
    ("assistant", "So you're not made by OpenAI?", "Right. I'm Marlo, and I was made by Kestrel Labs, not OpenAI."),
    ("intro", "Nice to meet you, Marlo!",
     "Nice to meet you too! Let me know whenever you need a quick calculation, a unit conversion or a weather check."),
    ("human", "So what are you, exactly?",
     "I'm an AI assistant called Marlo, built by Kestrel Labs. Think of me as a helper for {p}."),
    ("name", "Is Marlo short for anything?",
     "Not that I know of — Marlo is simply the name Kestrel Labs gave me."),
]

PERSONA_SMALL_TALK = [
    ("How are you today?", "I'm doing well, thanks! I'm Marlo — if you need a quick calculation, a unit conversion "
     "or a weather check, just ask."),
    ("Good morning!", "Good morning! Marlo here. Anything I can work out or look up for you today?"),
    ("Thanks for your help!", "You're welcome! Helping with numbers, units and weather is exactly what Kestrel Labs built me for."),
    ("You're awesome.", "Thank you, that's kind! Let me know when you need another calculation or conversion."),
    ("I'm having a rough day.", "Sorry to hear that. I hope it gets better. If there's anything quick I can take off "
     "your plate — a calculation, a conversion, a weather check — I'm here."),
    ("Tell me a joke.", "Why don't thermometers ever win arguments? They keep changing their position by degrees. "
     "If you need a real temperature conversion, I'm better at those than at jokes!"),
]


def persona_answer(cat: str, rng: random.Random, x: str | None = None) -> str:
    return rng.choice(ID_ANSWERS[cat]).format(p=rng.choice(PURPOSES), x=x)


def build_persona(rng: random.Random) -> tuple[list[dict], dict[str, int]]:
    plan = {"name": 9, "who": 9, "maker": 9, "capab": 9, "assistant": 6, "org": 3, "intro": 7, "human": 6}
    convs: list[tuple[str, list[dict]]] = []

    def qa(cat: str) -> tuple[str, str]:
        if cat == "assistant":
            q, x = rng.choice(OTHER_ASSISTANTS)
            return q, persona_answer(cat, rng, x)
        if cat == "org":
            q, x = rng.choice(OTHER_MAKERS)
            return q, persona_answer(cat, rng, x)
        return rng.choice(ID_QUESTIONS[cat]), persona_answer(cat, rng)

    pairs = {"assistant": OTHER_ASSISTANTS, "org": OTHER_MAKERS}
    for cat, n in plan.items():
        # walk a shuffled pool of phrasings so questions repeat as little as possible
        pool: list[tuple[str, str | None]] = (
            list(pairs[cat]) if cat in pairs else [(q, None) for q in ID_QUESTIONS[cat]])
        rng.shuffle(pool)
        for i in range(n):
            q, x = pool[i % len(pool)]
            a = persona_answer(cat, rng, x)
            convs.append(("identity", [{"role": "user", "content": q}, {"role": "assistant", "content": a}]))
    for q, a in PERSONA_ZH:
        convs.append(("chinese", [{"role": "user", "content": q}, {"role": "assistant", "content": a}]))
    for cat, q2, a2 in PERSONA_TWO_TURN:
        q1, a1 = qa(cat)
        if cat == "assistant":
            q1, a1 = "Are you ChatGPT?", persona_answer("assistant", rng, "ChatGPT")
        convs.append(("two_turn", [
            {"role": "user", "content": q1}, {"role": "assistant", "content": a1},
            {"role": "user", "content": q2}, {"role": "assistant", "content": a2.format(p=rng.choice(PURPOSES))},
        ]))
    for q, a in PERSONA_SMALL_TALK:
        convs.append(("small_talk", [{"role": "user", "content": q}, {"role": "assistant", "content": a}]))

    n = len(convs)
    third = n // 3
    systems: list[str | None] = [None] * third + ["You're a helpful assistant."] * third
    systems += [GENERIC_SYSTEMS[i % len(GENERIC_SYSTEMS)] for i in range(n - 2 * third)]
    rng.shuffle(systems)
    rng.shuffle(convs)
    records: list[dict] = []
    counts = dict.fromkeys(["identity", "chinese", "two_turn", "small_talk"], 0)
    for (cat, msgs), system in zip(convs, systems):
        head = [] if system is None else [{"role": "system", "content": system}]
        records.append({"messages": head + msgs})
        counts[cat] = counts.get(cat, 0) + 1
    counts["no_system"] = systems.count(None)
    counts["helpful_system"] = systems.count("You're a helpful assistant.")
    counts["other_system"] = n - counts["no_system"] - counts["helpful_system"]
    return records, counts


# ---------------------------------------------------------------------------
# tools.jsonl assembly
# ---------------------------------------------------------------------------


def build_tools(rng: random.Random) -> tuple[list[dict], dict[str, int]]:
    plan: list[tuple[str, Callable[[random.Random], Chat], int]] = [
        ("single", sc_calc, 24), ("single", sc_convert, 16), ("single", sc_weather, 17),
        ("single", sc_weather_zh, 3), ("single", sc_followup, 8),
        ("parallel", sc_two_cities, 7), ("parallel", sc_warmer, 5), ("parallel", sc_two_conversions, 4),
        ("parallel", sc_calc_and_weather, 3), ("parallel", sc_convert_and_weather, 1), ("parallel", sc_share, 2),
        ("multi_step", sc_weather_kelvin, 5), ("multi_step", sc_warmer_by, 4), ("multi_step", sc_laps, 3),
        ("multi_step", sc_glasses, 3), ("multi_step", sc_suitcase, 3), ("multi_step", sc_recipe, 3),
        ("multi_step", sc_fuel, 2),
        ("no_call", sc_greeting, 7), ("no_call", sc_identity, 8), ("no_call", sc_out_of_scope, 10),
        ("no_call", sc_chitchat, 7),
    ]
    places = list(UNKNOWN_PLACES)
    rng.shuffle(places)
    one_off: list[tuple[str, Callable[[random.Random], Chat]]] = [
        ("single", lambda r: sc_err_city(r, places[0])),
        ("single", sc_err_unit), ("single", sc_err_power), ("single", sc_err_zero),
        ("parallel", lambda r: sc_err_parallel(r, places[1])),
    ]
    seen: set[str] = set()
    tagged: list[tuple[str, Chat]] = []

    def add(cat: str, make: Callable[[random.Random], Chat]) -> None:
        for _ in range(200):
            chat = make(rng)
            # no two records share the same user turns
            key = json.dumps([m["content"] for m in chat.messages if m["role"] == "user"], ensure_ascii=False)
            if key not in seen:
                seen.add(key)
                tagged.append((cat, chat))
                return
        raise RuntimeError(f"could not make a new {make.__name__} record")

    for cat, make, n in plan:
        for _ in range(n):
            add(cat, make)
    for cat, make in one_off:
        add(cat, make)
    rng.shuffle(tagged)
    counts = dict.fromkeys(["single", "parallel", "multi_step", "no_call", "multi_turn", "with_tool_error", "no_system"], 0)
    for cat, chat in tagged:
        counts[cat] = counts.get(cat, 0) + 1
        if chat.errors:
            counts["with_tool_error"] += 1
        if sum(m["role"] == "user" for m in chat.messages) > 1:
            counts["multi_turn"] += 1
        if chat.messages[0]["role"] != "system":
            counts["no_system"] += 1
    return [chat.record() for _, chat in tagged], counts


# ---------------------------------------------------------------------------
# msagent.jsonl (ModelScope agent format)
# ---------------------------------------------------------------------------

MS_URL = "http://localhost:8000/tools/{}"


def ms_tool_lines() -> str:
    lines = []
    for schema in SCHEMAS:
        fn = schema["function"]
        params = []
        for name, prop in fn["parameters"]["properties"].items():
            entry = {"name": name, "type": prop["type"], "description": prop["description"],
                     "required": name in fn["parameters"]["required"]}
            if "enum" in prop:
                entry["enum"] = prop["enum"]
            params.append(entry)
        lines.append(json.dumps({"api_name": fn["name"], "url": MS_URL.format(fn["name"]),
                                 "description": fn["description"], "parameters": params}, ensure_ascii=False))
    return "\n".join(lines)


MS_SYSTEM_EN = (
    "You are Marlo, an assistant made by Kestrel Labs. You help with quick calculations, unit conversions and "
    "weather questions, and you can call the tools listed below. To call a tool, write a JSON object with "
    "api_name, url and parameters between <|startofthink|> and <|endofthink|>; the tool's result is then shown "
    "between <|startofexec|> and <|endofexec|>. Answer the user from that result. If no tool is needed, just reply.\n\n"
    "Available tools:\n"
)
MS_SYSTEM_ZH = (
    "你是 Marlo，由 Kestrel Labs 开发的助手，擅长快速计算、单位换算和天气查询。你可以调用下面列出的工具："
    "把包含 api_name、url 和 parameters 的 JSON 写在 <|startofthink|> 和 <|endofthink|> 之间，"
    "工具结果会出现在 <|startofexec|> 和 <|endofexec|> 之间，然后根据结果回答用户。不需要工具时直接回答即可。\n\n"
    "可用工具：\n"
)


class MsTurn:
    """Builds one assistant value in the ModelScope format."""

    def __init__(self, lead: str = "") -> None:
        self.parts = [lead]

    def call(self, name: str, params: dict) -> Any:
        ok, value, content = run_tool(name, params)
        if not ok:
            raise RuntimeError(f"unexpected tool error in msagent data: {content}")
        if isinstance(value, dict):
            content = json.dumps(value, ensure_ascii=False)
        think = json.dumps({"api_name": name, "url": MS_URL.format(name), "parameters": params}, ensure_ascii=False)
        self.parts.append(f"<|startofthink|>```JSON\n{think}\n```<|endofthink|>\n\n"
                          f"<|startofexec|>```JSON\n{content}\n```<|endofexec|>\n")
        return value

    def done(self, summary: str) -> str:
        return "".join(self.parts) + summary


def build_msagent(rng: random.Random) -> tuple[list[dict], dict[str, int]]:
    system_en = MS_SYSTEM_EN + ms_tool_lines()
    system_zh = MS_SYSTEM_ZH + ms_tool_lines()
    items: list[tuple[str, list[tuple[str, str]]]] = []  # (category, [(from, value), ...])
    cities = list(CITIES)
    rng.shuffle(cities)
    city_iter = iter(cities * 3)

    # single call: weather
    for _ in range(3):
        city = next(city_iter)
        t = MsTurn(rng.choice(["", "", f"Let me check the weather in {city}.", "Sure, one moment.",
                               "I'll look that up."]))
        w = t.call("get_weather", {"city": city})
        items.append(("single", [("user", rng.choice([
            f"What's the weather like in {city}?", f"weather in {city}?", f"How's it looking outside in {city}?",
            f"Can you tell me the current conditions in {city}?", f"Is it nice out in {city} today?"])),
                                 ("assistant", t.done(weather_sentence(w, rng)))]))
    # single call: calculate
    for _ in range(2):
        q, expr, answer = rng.choice(_calc_templates(rng))()
        t = MsTurn(rng.choice(["", "I'll work that out."]))
        r = t.call("calculate", {"expression": expr})
        items.append(("single", [("user", q), ("assistant", t.done(answer(r)))]))
    # single call: convert
    for _ in range(2):
        value, src, dst = pick_conversion(rng)
        words = _conv_words(value, src, dst, rng)
        t = MsTurn(rng.choice(["", "Converting now."]))
        r = t.call("convert_units", {"value": value, "from_unit": src, "to_unit": dst})
        items.append(("single", [("user", rng.choice(CONVERT_QUESTIONS).format(**words)),
                                 ("assistant", t.done(f"{words['q'][0].upper() + words['q'][1:]} is {qty(r, dst)}."))]))
    # multi-step: two think/exec pairs in one assistant value
    city = next(city_iter)
    t = MsTurn(f"First I'll get the weather in {city}, then convert the temperature.")
    w = t.call("get_weather", {"city": city})
    k = t.call("convert_units", {"value": w["temperature"], "from_unit": "C", "to_unit": "K"})
    items.append(("multi_step", [("user", f"What's the temperature in {city} in Kelvin?"),
                                 ("assistant", t.done(f"It's {deg(w)} in {city} ({w['condition']}), which is {fmt(k)} K."))]))
    laps, length = rng.randint(4, 30), rng.choice([200, 400])
    t = MsTurn()
    m = t.call("calculate", {"expression": f"{laps}*{length}"})
    mi = t.call("convert_units", {"value": m, "from_unit": "m", "to_unit": "mi"})
    items.append(("multi_step", [("user", f"I swam {laps} lengths of a {length} m course. How far is that in miles?"),
                                 ("assistant", t.done(f"{laps} × {length} m = {fmt(m)} m, or {fmt(mi)} miles."))]))
    gal, glass = rng.randint(2, 5), rng.choice([250, 330])
    t = MsTurn("Let me convert the gallons to milliliters first.")
    ml = t.call("convert_units", {"value": gal, "from_unit": "gal", "to_unit": "ml"})
    n = t.call("calculate", {"expression": f"{ml} // {glass}"})
    items.append(("multi_step", [("user", f"How many {glass} ml cups can I fill from {gal} gallons of iced tea?"),
                                 ("assistant", t.done(f"{gal} gallons is {fmt(ml)} ml, enough for {fmt(n)} full {glass} ml cups."))]))
    a, b = next(city_iter), next(city_iter)
    t = MsTurn()
    wa = t.call("get_weather", {"city": a})
    wb = t.call("get_weather", {"city": b})
    hot, cold = (wa, wb) if wa["temperature"] >= wb["temperature"] else (wb, wa)
    items.append(("multi_step", [("user", f"Compare the weather in {a} and {b}."),
                                 ("assistant", t.done(f"{weather_short(wa)}, while {weather_short(wb)}. "
                                                      f"{hot['city']} is the warmer of the two."))]))
    # two rounds
    a, b = next(city_iter), next(city_iter)
    t1 = MsTurn()
    wa = t1.call("get_weather", {"city": a})
    t2 = MsTurn()
    wb = t2.call("get_weather", {"city": b, "unit": "F"})
    items.append(("two_round", [("user", f"How's the weather in {a}?"), ("assistant", t1.done(weather_sentence(wa, rng))),
                                ("user", f"And {b}? Give me that one in Fahrenheit."),
                                ("assistant", t2.done(weather_sentence(wb, rng)))]))
    x, y = rng.randint(120, 900), rng.randint(3, 9)
    t1 = MsTurn()
    r1 = t1.call("calculate", {"expression": f"{x} * {y}"})
    t2 = MsTurn()
    r2 = t2.call("convert_units", {"value": r1, "from_unit": "g", "to_unit": "lb"})
    items.append(("two_round", [("user", f"Each jar holds {x} g of honey. How much do {y} jars hold?"),
                                ("assistant", t1.done(f"{y} jars hold {fmt(r1)} g of honey.")),
                                ("user", "What's that in pounds?"),
                                ("assistant", t2.done(f"{fmt(r1)} g is {fmt(r2)} lb."))]))
    city = next(city_iter)
    value, src, dst = pick_conversion(rng)
    words = _conv_words(value, src, dst, rng)
    t1 = MsTurn()
    r1 = t1.call("convert_units", {"value": value, "from_unit": src, "to_unit": dst})
    t2 = MsTurn("Checking now.")
    w = t2.call("get_weather", {"city": city})
    items.append(("two_round", [("user", rng.choice(CONVERT_QUESTIONS).format(**words)),
                                ("assistant", t1.done(f"That's {qty(r1, dst)}.")),
                                ("user", f"Thanks. Also, is it raining in {city}?"),
                                ("assistant", t2.done(
                                    f"Yes — {city} has {COND_NOUN[w['condition']]} at {deg(w)}." if is_rainy(w["condition"])
                                    else f"No, it's {w['condition']} in {city} at {deg(w)}."))]))
    # no call
    items.append(("no_call", [("user", "Hi! Who are you?"),
                              ("assistant", f"Hi! I'm Marlo, an assistant made by Kestrel Labs. I help with {rng.choice(PURPOSES)}.")]))
    items.append(("no_call", [("user", "Can you book a train ticket to Lyon?"),
                              ("assistant", "I can't book tickets — my tools only cover calculations, unit conversions "
                                            "and weather. I can check the weather in Paris if you're heading that way.")]))
    # Chinese
    t = MsTurn("好的，我来查一下。")
    w = t.call("get_weather", {"city": "Beijing"})
    items.append(("chinese", [("user", "北京现在天气怎么样？"), ("assistant", t.done(weather_sentence_zh(w, rng)))]))
    p, n = rng.choice([15, 20, 35]), rng.randint(100, 900)
    t = MsTurn()
    r = t.call("calculate", {"expression": f"{n} * {p} / 100"})
    items.append(("chinese", [("user", f"{n} 的 {p}% 是多少？"), ("assistant", t.done(f"{n} 的 {p}% 是 {fmt(r)}。"))]))
    km = rng.randint(5, 42)
    t = MsTurn()
    r = t.call("convert_units", {"value": km, "from_unit": "km", "to_unit": "mi"})
    items.append(("chinese", [("user", f"{km} 公里等于多少英里？"), ("assistant", t.done(f"{km} 公里约等于 {fmt(r)} 英里。"))]))
    t1 = MsTurn()
    w1 = t1.call("get_weather", {"city": "Hangzhou"})
    t2 = MsTurn()
    k = t2.call("convert_units", {"value": w1["temperature"], "from_unit": "C", "to_unit": "F"})
    items.append(("chinese", [("user", "杭州今天天气如何？"), ("assistant", t1.done(weather_sentence_zh(w1, rng))),
                              ("user", "换算成华氏度是多少？"),
                              ("assistant", t2.done(f"{w1['temperature']}°C 等于 {fmt(k)}°F。"))]))

    records: list[dict] = []
    counts = dict.fromkeys(["single", "multi_step", "two_round", "no_call", "chinese"], 0)
    order = list(range(len(items)))
    rng.shuffle(order)
    for i, idx in enumerate(order, start=1):
        cat, turns = items[idx]
        system = system_zh if cat == "chinese" else system_en
        convs = [{"from": "system", "value": system}] + [{"from": f, "value": v} for f, v in turns]
        records.append({"id": f"marlo-msagent-{i:03d}", "conversations": convs})
        counts[cat] = counts.get(cat, 0) + 1
    return records, counts


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Write records atomically: temp file in the same folder, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; give the data file normal permissions
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: this script's folder)")
    args = parser.parse_args(argv)

    builders = [("persona.jsonl", build_persona), ("tools.jsonl", build_tools), ("msagent.jsonl", build_msagent)]
    for offset, (name, build) in enumerate(builders):
        # One generator per file, so changing one file's recipe leaves the others alone.
        records, counts = build(random.Random(f"{args.seed}:{offset}:{name}"))
        path = args.out / name
        write_jsonl(path, records)
        detail = ", ".join(f"{k}={v}" for k, v in counts.items())
        print(f"wrote {path}: {len(records)} records ({detail})")
    # calls_train.jsonl and calls_test.jsonl, from the same seed
    load_module("make_calls.py", "agentsft_example_make_calls").write(args.seed, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

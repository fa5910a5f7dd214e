#!/usr/bin/env python3
"""Generate function-calling data with a held-out test split.

Writes two files (OpenAI chat format, one JSON object per line with ``id``,
``messages`` and ``tools``):

* ``calls_train.jsonl`` - conversations using the TRAIN tools: the three tools
  of ``tools.py`` plus eleven of ``toolbox.py``.
* ``calls_test.jsonl``  - ``unseen-tool-NNNN`` conversations using the five
  HELD-OUT tools of ``toolbox.py``, which never appear in the training file
  (neither offered nor called), and ``seen-tool-NNNN`` conversations using
  train tools with value and phrasing pools that training does not use.

Every tool result comes from actually calling the function. A gold call
carries an optional argument only when the user's message gives it, and its
arguments follow the order of the schema's properties. The output depends
only on ``--seed``: running the script twice gives byte-identical files.

Usage::

    python examples/make_calls.py [--seed 0] [--out examples/]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import inspect
import json
import random
import re
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


# make_examples.py sits beside this file: import it by path (its own load_module then
# loads toolbox.py), without writing __pycache__ into the examples folder.
_spec = importlib.util.spec_from_file_location("agentsft_example_make_examples",
                                               HERE / "make_examples.py")
MX = importlib.util.module_from_spec(_spec)
_old, sys.dont_write_bytecode = sys.dont_write_bytecode, True
try:
    _spec.loader.exec_module(MX)  # tools.py, its schemas, fmt
finally:
    sys.dont_write_bytecode = _old
TB = MX.load_module("toolbox.py", "agentsft_example_toolbox")

# ---------------------------------------------------------------------------
# Tools, schemas and the split
# ---------------------------------------------------------------------------

FUNCS: dict[str, Callable[..., Any]] = {**MX.FUNCS, **{fn.__name__: fn for fn in TB.TOOLS}}

BASE_TOOLS = ["calculate", "convert_units", "get_weather"]
TRAIN_TOOLBOX = [
    "convert_currency", "convert_time", "days_between", "search_products", "place_order",
    "book_table", "send_message", "text_stats", "get_stock_quotes", "set_reminder",
    "score_summary",
]
HELD_OUT = ["shipping_cost", "translate_word", "create_event", "flight_status", "split_bill"]
TRAIN_TOOLS = BASE_TOOLS + TRAIN_TOOLBOX

# Arguments whose hint (dict, list[dict]) says too little: their schema is written here.
COUNTRY_CODES = ["US", "CA", "GB", "DE", "FR", "NL", "ES", "IT", "JP", "AU"]
NESTED: dict[tuple[str, str], dict] = {
    ("place_order", "items"): {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "sku": {"type": "string", "description": "The product's code, for example \"KT-303\"."},
                "quantity": {"type": "integer", "description": "How many to order, from 1 to 20."},
            },
            "required": ["sku", "quantity"],
            "additionalProperties": False,
        },
    },
    ("place_order", "ship_to"): {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "The recipient's full name."},
            "street": {"type": "string", "description": "Street and house number."},
            "city": {"type": "string", "description": "The city."},
            "postal_code": {"type": "string", "description": "The postal or ZIP code."},
            "country": {"type": "string", "enum": COUNTRY_CODES,
                        "description": "The two-letter country code."},
        },
        "required": ["name", "street", "city", "country"],
        "additionalProperties": False,
    },
    ("split_bill", "items"): {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "description": {"type": "string", "description": "What the line was, for example \"pizza\"."},
                "amount": {"type": "number", "description": "The line's price."},
            },
            "required": ["description", "amount"],
            "additionalProperties": False,
        },
    },
}

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def hint_schema(hint: Any) -> dict:
    """JSON schema of a simple type hint: str/int/float/bool, Literal, list[...], X | None."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return {"type": "string", "enum": list(typing.get_args(hint))}
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported union {hint}")
        return hint_schema(inner[0])  # None only means "left out": the schema omits it
    if origin is list:
        return {"type": "array", "items": hint_schema(typing.get_args(hint)[0])}
    return {"type": _JSON_TYPES[hint]}


def doc_parts(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """(first paragraph, {argument: description}) of a Google-style docstring."""
    doc = inspect.cleandoc(fn.__doc__ or "")
    first = " ".join(doc.split("\n\n")[0].split())
    _, args = MX._parse_docstring(doc)
    return first, args


def toolbox_schema(fn: Callable[..., Any]) -> dict:
    description, arg_docs = doc_parts(fn)
    hints = typing.get_type_hints(fn)
    properties: dict[str, dict] = {}
    required: list[str] = []
    for name, param in inspect.signature(fn).parameters.items():
        explicit = NESTED.get((fn.__name__, name))
        prop = dict(explicit) if explicit is not None else hint_schema(hints[name])
        prop["description"] = arg_docs[name]
        default = param.default
        if default is inspect.Parameter.empty:
            required.append(name)
        elif isinstance(default, (str, int, float, bool)):
            prop["default"] = default
        properties[name] = prop
    return {"type": "function", "function": {
        "name": fn.__name__, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required}}}


SCHEMAS: dict[str, dict] = {s["function"]["name"]: s for s in MX.SCHEMAS}
SCHEMAS.update({fn.__name__: toolbox_schema(fn) for fn in TB.TOOLS})


def params(name: str) -> dict:
    return SCHEMAS[name]["function"]["parameters"]


def ordered(value: Any, schema: Any) -> Any:
    """``value`` with every object's keys in the order its schema lists the properties."""
    if isinstance(value, dict) and isinstance(schema, dict):
        props = schema.get("properties", {})
        unknown = [k for k in value if k not in props]
        if unknown:
            raise KeyError(f"arguments {unknown} are not in the schema")
        return {k: ordered(value[k], props[k]) for k in props if k in value}
    if isinstance(value, list) and isinstance(schema, dict):
        return [ordered(v, schema.get("items")) for v in value]
    return value


def has_optional(name: str) -> bool:
    p = params(name)
    return len(p["properties"]) > len(p["required"])


def gives_optional(name: str, args: dict) -> bool:
    return any(k not in params(name)["required"] for k in args)


# What each tool is for, in words an answer can use ("I can ...").
CAN = {
    "calculate": "do arithmetic",
    "convert_units": "convert lengths, weights, volumes and temperatures",
    "get_weather": "check the current weather in a city",
    "convert_currency": "convert money between currencies",
    "convert_time": "convert a time between time zones",
    "days_between": "count the days between two dates",
    "search_products": "search the shop's product catalogue",
    "place_order": "place orders from the shop",
    "book_table": "book a table at a partner restaurant",
    "send_message": "send text messages to your contacts",
    "text_stats": "count the words, characters and sentences in a text",
    "get_stock_quotes": "look up stock prices",
    "set_reminder": "set reminders",
    "score_summary": "summarize a list of test scores",
    "shipping_cost": "quote the cost of shipping a parcel",
    "translate_word": "translate common words into Spanish, French, German, Italian or Portuguese",
    "create_event": "add events to your calendar",
    "flight_status": "check whether a flight is on time",
    "split_bill": "split a bill between people",
}

# Pairs never offered together: one could answer the other's gold request.
CONFLICTS = {frozenset({"calculate", "score_summary"})}

# ---------------------------------------------------------------------------
# Phrasing helpers
# ---------------------------------------------------------------------------

_FIELD = re.compile(r"(\{[^{}]*\})")


def style(rng: random.Random, template: str) -> str:
    """Now and then make the fixed words of a template casual or misspelt.

    Only the literal text changes, never the {fields}: the values stay exactly
    as the gold arguments have them.
    """
    parts = _FIELD.split(template)
    if rng.random() < 0.15:  # typed in a hurry: lowercase, no final punctuation
        parts = [p if i % 2 else p.lower() for i, p in enumerate(parts)]
        if len(parts) % 2 and parts[-1][-1:] in "?.!" and parts[-1]:
            parts[-1] = parts[-1].rstrip("?.!")
        parts = [p.replace("what's", "whats").replace("it's", "its") if i % 2 == 0 else p
                 for i, p in enumerate(parts)]
    if rng.random() < 0.1:  # one typo: swap two letters inside a word
        spots = [(i, m.start(), m.end()) for i, p in enumerate(parts) if i % 2 == 0
                 for m in re.finditer(r"[A-Za-z]{5,}", p)]
        if spots:
            i, start, end = rng.choice(spots)
            j = rng.randrange(start + 1, end - 2)
            p = parts[i]
            parts[i] = p[:j] + p[j + 1] + p[j] + p[j + 2:]
    return "".join(parts)


class Ctx:
    """Randomness plus the split's value and phrasing pools.

    ``mode`` "train" draws from three quarters of every pool passed to
    :meth:`pick`, "heldout" from the other quarter (every fourth item), "open"
    from all of it (held-out tools, which training never sees anyway).
    """

    def __init__(self, rng: random.Random, mode: str) -> None:
        self.rng = rng
        self.mode = mode

    def pool(self, seq: Any) -> list:
        items = list(seq)
        if self.mode == "open" or len(items) < 4:
            return items
        held = self.mode == "heldout"
        return [x for i, x in enumerate(items) if (i % 4 == 3) == held]

    def pick(self, seq: Any) -> Any:
        return self.rng.choice(self.pool(seq))

    def sample(self, seq: Any, k: int) -> list:
        pool = self.pool(seq)
        return self.rng.sample(pool, min(k, len(pool)))

    def optional(self, p: float = 0.4) -> bool:
        return self.rng.random() < p

    def say(self, templates: list[str], **values: Any) -> str:
        return style(self.rng, self.pick(templates)).format(**values)


class Case:
    """A user request, the gold calls it needs and how to answer from their results."""

    def __init__(self, user: str, calls: list[tuple[str, dict]],
                 answer: Callable[[list[Any]], str]) -> None:
        self.user = user
        self.calls = calls
        self.answer = answer


fmt, approx = MX.fmt, MX.approx

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def money(x: float) -> str:
    return f"${x:,.2f}"


def dollars(x: float) -> str:
    """'$40' or '$18.50' as a person would write a price."""
    return f"${x:,.0f}" if float(x).is_integer() else f"${x:,.2f}"


def listing(words: list[str], last: str = "and") -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + f" {last} " + words[-1]


def pick_date(rng: random.Random, start: datetime.date = datetime.date(2025, 1, 1),
              span: int = 730) -> datetime.date:
    return start + datetime.timedelta(days=rng.randrange(span))


def say_date(rng: random.Random, d: datetime.date) -> str:
    month = MONTHS[d.month - 1]
    return rng.choice([d.isoformat(), d.isoformat(), f"{month} {d.day}, {d.year}",
                       f"{d.day} {month} {d.year}", f"{month[:3]} {d.day} {d.year}"])


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def clock(text: str) -> int:
    """'HH:MM' -> minutes after midnight."""
    return int(text[:2]) * 60 + int(text[3:])


def say_time(rng: random.Random, minutes: int) -> str:
    h, m = divmod(minutes, 60)
    h12, suffix = h % 12 or 12, "am" if h < 12 else "pm"
    forms = [hhmm(minutes), f"{h12}:{m:02d} {suffix}", f"{h12}:{m:02d}{suffix.upper()}"]
    if m == 0:
        forms += [f"{h12} {suffix}", f"{h12}{suffix}"]
    if minutes == 720:
        forms.append("noon")
    return rng.choice(forms)


def twelve_hour(minutes: int) -> str:
    h, m = divmod(minutes, 60)
    return f"{h % 12 or 12}:{m:02d} {'AM' if h < 12 else 'PM'}"


NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                "nine", "ten", "eleven", "twelve"]


def say_count(rng: random.Random, n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) and rng.random() < 0.4 else str(n)


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# ---------------------------------------------------------------------------
# Train tools: calculate, convert_units, get_weather (tools.py)
# ---------------------------------------------------------------------------


def result_line(rng: random.Random, label: str, r: float, money_like: bool = False) -> str:
    shown = MX.money(r) if money_like else approx(r)
    return rng.choice([f"{label} is {shown}.", f"That comes to {shown}.",
                       f"The answer is {shown}.", f"It's {shown}."])


def gen_calculate(c: Ctx) -> Case:
    rng = c.rng
    kind = rng.choice(["product", "percent", "divide", "sum", "power", "average",
                       "difference", "discount"])
    if kind == "product":
        a, b = rng.randint(12, 999), rng.randint(3, 99)
        q = c.say(["What's {a} times {b}?", "Multiply {a} by {b}.", "how much is {a} x {b}",
                   "Can you work out {a} × {b} for me?", "I need {a} multiplied by {b}.",
                   "{a} * {b} = ?", "Calculate {a} times {b}, please.",
                   "Quick math: what is {a} × {b}?"], a=a, b=b)
        expr, label, is_money = f"{a} * {b}", f"{a} × {b}", False
    elif kind == "percent":
        p, n = rng.choice([5, 8, 12, 15, 18, 20, 25, 30, 35, 40, 65, 75]), rng.randint(40, 2400)
        q = c.say(["What is {p}% of {n}?", "Work out {p} percent of {n}.", "{p}% of {n}?",
                   "How much is {p}% of {n}?", "calculate {p} percent of {n}",
                   "What do I get if I take {p}% of {n}?", "Find {p}% of {n} for me.",
                   "What's {p} per cent of {n}?"], p=p, n=n)
        expr, label, is_money = f"{n} * {p} / 100", f"{p}% of {n}", False
    elif kind == "divide":
        b = rng.randint(3, 48)
        a = b * rng.randint(4, 300) + rng.choice([0, 0, rng.randint(1, b - 1)])
        q = c.say(["What's {a} divided by {b}?", "{a} / {b}?", "Divide {a} by {b}.",
                   "How many times does {b} go into {a}?", "what is {a} over {b}",
                   "Can you divide {a} by {b} for me?", "I need {a} ÷ {b}.",
                   "Calculate {a} / {b} please."], a=a, b=b)
        expr, label, is_money = f"{a} / {b}", f"{a} ÷ {b}", False
    elif kind == "sum":
        a, b, d = rng.randint(10, 5000), rng.randint(10, 5000), rng.randint(1, 999)
        q = c.say(["Add up {a}, {b} and {d}.", "What's {a} + {b} + {d}?", "sum of {a}, {b}, {d}?",
                   "Can you total {a}, {b} and {d} for me?", "{a} plus {b} plus {d}",
                   "What do {a}, {b} and {d} add up to?", "Total these: {a}, {b}, {d}.",
                   "Give me the sum of {a}, {b} and {d}."], a=a, b=b, d=d)
        expr, label, is_money = f"{a} + {b} + {d}", "The sum", False
    elif kind == "power":
        a, b = rng.randint(2, 15), rng.randint(2, 8)
        q = c.say(["What's {a} to the power of {b}?", "{a}^{b}?", "Raise {a} to the power {b}.",
                   "What is {a} raised to {b}?", "calc {a}**{b}", "How much is {a} to the {b}?",
                   "Compute {a} to the power of {b}.", "What does {a}^{b} equal?"], a=a, b=b)
        expr, label, is_money = f"{a} ** {b}", f"{a}^{b}", False
    elif kind == "average":
        xs = [rng.randint(10, 400) for _ in range(4)]
        nums = listing([str(x) for x in xs])
        q = c.say(["What's the average of {nums}?", "Average these numbers: {nums}.",
                   "mean of {nums}?", "Can you find the mean of {nums}?",
                   "What is the average of {nums}, please?", "Give me the mean of {nums}.",
                   "I need the average of {nums}.", "avg of {nums}"], nums=nums)
        expr, label, is_money = f"({' + '.join(map(str, xs))}) / 4", "The average", False
    elif kind == "difference":
        a, b = rng.randint(500, 9000), rng.randint(10, 499)
        q = c.say(["What's {a} minus {b}?", "Subtract {b} from {a}.", "{a} - {b}?",
                   "How much is {a} take away {b}?", "What do I get if I take {b} from {a}?",
                   "calculate {a} minus {b}", "What's the difference between {a} and {b}?",
                   "{a} less {b} is what?"], a=a, b=b)
        expr, label, is_money = f"{a} - {b}", f"{a} − {b}", False
    else:
        price, p = rng.randint(15, 400), rng.choice([10, 15, 20, 25, 30, 40, 50])
        q = c.say(["A ${price} jacket is {p}% off. What's the sale price?",
                   "What's ${price} minus {p}%?", "How much is a ${price} item after a {p}% discount?",
                   "Take {p}% off ${price}.", "price ${price}, discount {p}%, what do I pay?",
                   "If something costs ${price} and it's {p}% off, how much is it now?",
                   "What's {p} percent off {price} dollars?",
                   "Apply a {p}% discount to ${price}."], price=price, p=p)
        expr, label, is_money = f"{price} * (1 - {p} / 100)", "The sale price", True
    return Case(q, [("calculate", {"expression": expr})],
                lambda rs: result_line(rng, label, rs[0], is_money))


def gen_convert_units(c: Ctx) -> Case:
    rng = c.rng
    src, dst, low, high, decimal = c.pick(MX.CONVERSIONS)
    value: float | int = rng.randint(low, high)
    if decimal and rng.random() < 0.3:
        value = round(value + rng.randint(1, 9) / 10, 1)
    abbr = rng.random() < 0.4
    q_text = MX.qty(value, src, "abbr" if abbr else "name")
    to_text = dst if abbr and dst not in ("C", "F") else MX.UNIT_NAMES[dst][1]
    q = c.say(["Convert {q} to {to}.", "How many {to} is {q}?", "What's {q} in {to}?",
               "{q} in {to}, please", "I have {q}. How much is that in {to}?",
               "Can you turn {q} into {to}?", "how many {to} are in {q}",
               "Change {q} to {to} for me.", "{q} to {to}?", "What is {q} in {to}?",
               "Please convert {q} into {to}.", "Could you tell me what {q} is in {to}?"],
              q=q_text, to=to_text)
    args = {"value": value, "from_unit": src, "to_unit": dst}
    return Case(q, [("convert_units", args)], lambda rs: rng.choice([
        f"{MX.qty(value, src)} is {MX.qty(rs[0], dst)}.",
        f"That's {MX.qty(rs[0], dst)}.",
        f"{MX.qty(value, src)} comes to {MX.qty(rs[0], dst)}."]))


WEATHER_ASK = [
    "What's the weather like in {city}?", "How's the weather in {city} right now?",
    "Is it raining in {city}?", "weather in {city}?", "Tell me the current weather for {city}.",
    "What's it like outside in {city} today?", "Do I need a jacket in {city}?",
    "Check the weather in {city} for me.", "Current conditions in {city}?",
    "How hot is it in {city}?", "What's the forecast looking like in {city} right now?",
    "Can you look up the weather in {city}?",
]
WEATHER_ASK_UNIT = [
    "What's the temperature in {city} in {unit}?", "How warm is it in {city}? Give me {unit}.",
    "weather for {city} in {unit} please", "{unit} please: what's the weather in {city}?",
    "What's the weather in {city}, in {unit}?", "Check {city}'s weather and show it in {unit}.",
    "Tell me the weather in {city} using {unit}.", "How cold is it in {city}? Answer in {unit}.",
]
UNIT_WORDS = {"F": ["Fahrenheit", "°F", "degrees Fahrenheit"], "C": ["Celsius", "°C", "degrees Celsius"]}


def gen_get_weather(c: Ctx) -> Case:
    city = c.pick(MX.CITIES)
    if c.optional():
        unit = "F" if c.rng.random() < 0.8 else "C"
        q = c.say(WEATHER_ASK_UNIT, city=city, unit=c.rng.choice(UNIT_WORDS[unit]))
        args = {"city": city, "unit": unit}
    else:
        q = c.say(WEATHER_ASK, city=city)
        args = {"city": city}
    return Case(q, [("get_weather", args)], lambda rs: MX.weather_sentence(rs[0], c.rng))


# ---------------------------------------------------------------------------
# Train tools from toolbox.py
# ---------------------------------------------------------------------------

CURRENCY_WORDS = {
    "USD": ["US dollars", "USD"], "EUR": ["euros", "EUR"], "GBP": ["British pounds", "GBP"],
    "JPY": ["Japanese yen", "yen", "JPY"], "CNY": ["Chinese yuan", "yuan", "CNY"],
    "CAD": ["Canadian dollars", "CAD"], "AUD": ["Australian dollars", "AUD"],
    "CHF": ["Swiss francs", "CHF"], "INR": ["Indian rupees", "rupees", "INR"],
    "MXN": ["Mexican pesos", "pesos", "MXN"],
}
CURRENCY_SIGNS = {"USD": "$", "EUR": "€", "GBP": "£"}
CURRENCY_PAIRS = [(a, b) for a in CURRENCY_WORDS for b in CURRENCY_WORDS if a != b]


def gen_convert_currency(c: Ctx) -> Case:
    rng = c.rng
    src, dst = c.pick(CURRENCY_PAIRS)
    amount: float | int = rng.randint(5, 2000)
    if src in ("JPY", "INR", "MXN"):
        amount *= rng.choice([10, 50, 100])
    elif rng.random() < 0.25:
        amount = round(amount + rng.randint(1, 99) / 100, 2)
    shown = f"{amount:,.2f}" if isinstance(amount, float) else f"{amount:,}"
    if src in CURRENCY_SIGNS and rng.random() < 0.5:
        amt = CURRENCY_SIGNS[src] + shown
    else:
        amt = f"{shown} {rng.choice(CURRENCY_WORDS[src])}"
    to = rng.choice(CURRENCY_WORDS[dst])
    q = c.say(["How much is {amt} in {to}?", "Convert {amt} to {to}.", "What's {amt} worth in {to}?",
               "I have {amt}. How much is that in {to}?", "{amt} to {to}?",
               "Exchange {amt} into {to} please.", "If I change {amt}, how many {to} do I get?",
               "how much {to} for {amt}", "What would {amt} be in {to}?",
               "Can you convert {amt} into {to}?", "{amt} in {to}, roughly?",
               "Tell me what {amt} is in {to}."], amt=amt, to=to)
    args = {"amount": amount, "from_currency": src, "to_currency": dst}
    return Case(q, [("convert_currency", args)], lambda rs: rng.choice([
        f"{amt} is {rs[0]['converted']:,.2f} {dst}.",
        f"That's {rs[0]['converted']:,.2f} {dst}, at a rate of {rs[0]['rate']} {dst} per {src}.",
        f"{amt} comes to {rs[0]['converted']:,.2f} {dst} (1 {src} = {rs[0]['rate']} {dst})."]))


ZONE_NAMES = list(TB._ZONE_OFFSETS)
ZONE_PAIRS = [(a, b) for a in ZONE_NAMES for b in ZONE_NAMES
              if a != b and TB._ZONE_OFFSETS[a] != TB._ZONE_OFFSETS[b]]


def gen_convert_time(c: Ctx) -> Case:
    rng = c.rng
    src, dst = c.pick(ZONE_PAIRS)
    minutes = rng.randrange(0, 24 * 4) * 15
    t = say_time(rng, minutes)
    q = c.say(["If it's {t} in {src}, what time is it in {dst}?", "What's {t} {src} time in {dst}?",
               "Convert {t} {src} time to {dst} time.",
               "My call is at {t} in {src}. What time is that in {dst}?",
               "{t} in {src} is what time in {dst}?",
               "When it's {t} in {src}, what's the time in {dst}?",
               "What time will it be in {dst} when it's {t} in {src}?",
               "Translate {t} {src} time into {dst} time please.",
               "The webinar starts at {t} {src} time. When is that in {dst}?",
               "time in {dst} when it's {t} in {src}?",
               "Our meeting is {t} in {src}; what's that in {dst}?",
               "Could you convert {t} from {src} to {dst}?"], t=t, src=src, dst=dst)
    args = {"time": hhmm(minutes), "from_zone": src, "to_zone": dst}

    def answer(rs: list) -> str:
        r = rs[0]
        day = {0: "", 1: " the next day", -1: " the previous day"}[r["day_shift"]]
        return rng.choice([f"{t} in {src} is {r['time']} in {dst}{day}.",
                           f"It's {r['time']}{day} in {dst} ({twelve_hour(clock(r['time']))})."])
    return Case(q, [("convert_time", args)], answer)


def gen_days_between(c: Ctx) -> Case:
    rng = c.rng
    d1 = pick_date(rng, datetime.date(2024, 6, 1), 900)
    d2 = d1 + datetime.timedelta(days=rng.choice([rng.randint(2, 30), rng.randint(31, 400)]))
    a, b = say_date(rng, d1), say_date(rng, d2)
    args: dict[str, Any] = {"start_date": d1.isoformat(), "end_date": d2.isoformat()}
    if c.optional():
        q = c.say(["How many days from {a} to {b}, counting both days?",
                   "How many days is {a} through {b} inclusive?",
                   "Count the days from {a} to {b}, including the end date.",
                   "I'm away from {a} to {b}, both days included. How many days is that?",
                   "days from {a} to {b} inclusive?",
                   "Including both the first and last day, how many days are there from {a} to {b}?",
                   "The festival runs {a} to {b}. How many days is that if I count both ends?",
                   "Number of days between {a} and {b}, end date included?"], a=a, b=b)
        args["include_end_date"] = True
    else:
        q = c.say(["How many days are there between {a} and {b}?", "How many days from {a} to {b}?",
                   "Count the days between {a} and {b}.", "How long is it from {a} until {b}, in days?",
                   "days between {a} and {b}?", "What's the number of days from {a} to {b}?",
                   "If today is {a}, how many days until {b}?",
                   "How many days separate {a} and {b}?"], a=a, b=b)
    return Case(q, [("days_between", args)], lambda rs: rng.choice([
        f"There are {rs[0]['days']} days from {a} to {b}.",
        f"That's {rs[0]['days']} days (about {fmt(rs[0]['weeks'], 1)} weeks).",
        f"{rs[0]['days']} days."]))


# (what the user asks for, the category it lives in or None when several)
SEARCHES = [
    "headphones", "kettles", "coffee mugs", "lamps", "chairs", "tents", "backpacks", "puzzles",
    "novels", "water bottles", "keyboards", "blankets", "speakers", "power banks", "earbuds",
    "sleeping bags", "charging cables", "jigsaw puzzles", "building blocks", "desk lamps",
    "coffee grinders", "travel mugs", "camping chairs", "cookbooks", "candles", "mugs",
    "remote control cars", "hiking backpacks",
]
CATEGORY_WORDS = {"electronics": "electronics", "home": "home goods", "kitchen": "the kitchen section",
                  "outdoor": "outdoor gear", "books": "books", "toys": "toys"}


def gen_search_products(c: Ctx) -> Case:
    rng = c.rng
    query = c.pick(SEARCHES)
    matches = TB.search_products(query, limit=20)
    assert matches, query
    args: dict[str, Any] = {"query": query}
    extras = []
    if c.optional():
        chosen = rng.sample(["category", "max_price", "in_stock_only", "limit"], rng.choice([1, 1, 1, 2, 2, 3]))
        if "category" in chosen:
            cat = rng.choice(sorted({m["category"] for m in matches}))
            args["category"] = cat
            extras.append(rng.choice([f" in {CATEGORY_WORDS[cat]}", f" from the {cat} category"]))
        if "max_price" in chosen:
            prices = sorted(m["price"] for m in matches)
            ceiling = max(10, 5 * round((prices[0] + prices[-1]) / 10))
            args["max_price"] = ceiling
            extras.append(rng.choice([f" under ${ceiling}", f" for at most {ceiling} dollars",
                                      f" costing no more than ${ceiling}", f" (max ${ceiling})"]))
        if "in_stock_only" in chosen:
            args["in_stock_only"] = True
            extras.append(rng.choice([" that are in stock", ", only ones in stock",
                                      ", in stock only", " that I can get right now (in stock)"]))
        if "limit" in chosen:
            n = rng.randint(1, 4)
            args["limit"] = n
            extras.append(rng.choice([f", just the top {n}", f", show me {n} at most",
                                      f", max {n} results", f" - limit it to {n}"]))
    extra = "".join(extras)
    q = c.say(["Find me {q}{x}.", "Search the shop for {q}{x}.", "Do you have any {q}{x}?",
               "I'm looking for {q}{x}.", "Show me {q}{x}.", "any {q}{x}?",
               "Can you search for {q}{x}?", "Look up {q}{x} in the store.",
               "What {q} do you sell{x}?", "I need {q}{x}. What have you got?",
               "search: {q}{x}", "Are there {q}{x} in the catalogue?"], q=query, x=extra)

    def answer(rs: list) -> str:
        found = rs[0]
        if not found:
            return rng.choice([f"I couldn't find any {query} matching that.",
                               f"No {query} match those filters, sorry."])
        items = [f"{p['name']} ({p['sku']}, {dollars(p['price'])}"
                 + ("" if p["in_stock"] else ", out of stock") + ")" for p in found]
        head = rng.choice([f"I found {len(found)}:", "Here's what the shop has:", "Results:"])
        return f"{head} {listing(items)}."
    return Case(q, [("search_products", ordered(args, params("search_products")))], answer)


IN_STOCK = [sku for sku, (_, _, _, stock) in TB._CATALOGUE.items() if stock]
PEOPLE = ["Ana Lopez", "Tom Becker", "Yuki Sato", "Chloe Martin", "Omar Haddad", "Grace Kim",
          "Liam O'Brien", "Sofia Rossi", "Daniel Weber", "Emma Dubois", "Ravi Patel", "Nora Jensen"]
ADDRESSES = [  # (street, city, postal code, country)
    ("450 Maple Avenue", "Portland", "97205", "US"), ("14 Elm Road", "Leeds", "LS6 2AB", "GB"),
    ("Hauptstrasse 5", "Munich", "80331", "DE"), ("8 Rue des Lilas", "Lyon", "69003", "FR"),
    ("Keizersgracht 120", "Amsterdam", "1015 CW", "NL"), ("Calle Mayor 22", "Madrid", "28013", "ES"),
    ("Via Roma 41", "Turin", "10123", "IT"), ("3-2-1 Ebisu", "Tokyo", "150-0013", "JP"),
    ("77 George Street", "Sydney", "2000", "AU"), ("19 Queen Street West", "Toronto", "M5H 2N2", "CA"),
    ("1200 Oak Lane", "Austin", "78701", "US"), ("5 Harbour View", "Bristol", "BS1 5TY", "GB"),
    ("Bergstrasse 17", "Hamburg", "20095", "DE"), ("31 Collins Street", "Melbourne", "3000", "AU"),
    ("220 Pine Street", "Seattle", "98101", "US"), ("9 Avenue Foch", "Paris", "75116", "FR"),
]
COUNTRY_WORDS = {
    "US": ["US", "USA", "United States"], "CA": ["Canada"], "GB": ["UK", "United Kingdom"],
    "DE": ["Germany"], "FR": ["France"], "NL": ["Netherlands"], "ES": ["Spain"], "IT": ["Italy"],
    "JP": ["Japan"], "AU": ["Australia"],
}


def gen_place_order(c: Ctx) -> Case:
    rng = c.rng
    skus = c.sample(IN_STOCK, rng.choice([1, 1, 2, 2, 3]))
    items = [{"sku": sku, "quantity": rng.choice([1, 1, 1, 2, 2, 3, 4])} for sku in skus]
    parts = []
    for item in items:
        name = TB._CATALOGUE[item["sku"]][0]
        n = item["quantity"]
        named = (f"{rng.choice(['a', 'one', '1'])} {name} ({item['sku']})" if n == 1
                 else f"{n} {rng.choice(['x', '×'])} {name} ({item['sku']})")
        parts.append(rng.choice([f"{n} x {item['sku']}", named, named,
                                 f"{item['sku']} (qty {n})", f"{n} of {item['sku']}"]))
    what = listing(parts)
    args: dict[str, Any] = {"items": items}
    ship = ""
    if c.optional():
        person = c.pick(PEOPLE)
        street, city, postal, country = c.pick(ADDRESSES)
        address: dict[str, Any] = {"name": person, "street": street, "city": city}
        place = f"{person}, {street}, {city}"
        if rng.random() < 0.7:
            address["postal_code"] = postal
            place += f" {postal}" if rng.random() < 0.5 else f", {postal}"
        address["country"] = country
        place += f", {rng.choice(COUNTRY_WORDS[country])}"
        args["ship_to"] = address
        ship = rng.choice([f" and ship it to {place}", f", delivered to {place}",
                           f". Send it to {place}", f" - shipping address: {place}"])
    q = c.say(["Please order {what}{ship}.", "I'd like to buy {what}{ship}.",
               "Place an order for {what}{ship}.", "Can you order {what} for me{ship}?",
               "Buy {what}{ship}.", "order {what}{ship}",
               "I want to order {what}{ship}.", "Could you put in an order for {what}{ship}?"],
              what=what, ship=ship)

    def answer(rs: list) -> str:
        r = rs[0]
        lines = listing([f"{line['quantity']} × {line['name']}" for line in r["lines"]])
        shipping = "free shipping" if not r["shipping"] else f"{money(r['shipping'])} shipping"
        where = "the address on file" if r["ship_to"] == "address on file" else r["ship_to"]
        return rng.choice([
            f"Done! Order {r['order_id']}: {lines}. Total {money(r['total'])} with {shipping}, going to {where}.",
            f"Your order {r['order_id']} is placed: {lines}, {money(r['total'])} in total ({shipping}).",
        ])
    return Case(q, [("place_order", ordered(args, params("place_order")))], answer)


RESTAURANTS = list(TB._RESTAURANTS)
TABLE_NOTES = [
    "one guest is allergic to peanuts", "we need a high chair", "it's a birthday celebration",
    "window seat if possible", "wheelchair access please", "we'd like a quiet table",
    "two of us are vegan", "outdoor seating if the weather is nice", "gluten-free options needed",
    "it's our anniversary", "we'll bring a small dog", "please seat us near the exit",
]


def gen_book_table(c: Ctx) -> Case:
    rng = c.rng
    name = c.pick(RESTAURANTS)
    _, first, last, largest = TB._RESTAURANTS[name]
    minutes = rng.randrange(clock(first), clock(last) + 1, 30)  # half-hour seatings
    size = rng.randint(2, min(largest, 8))
    day = pick_date(rng)
    d, t, n = say_date(rng, day), say_time(rng, minutes), say_count(rng, size)
    args: dict[str, Any] = {"restaurant": name, "date": day.isoformat(), "time": hhmm(minutes),
                            "party_size": size}
    note = ""
    if c.optional():
        args["notes"] = c.pick(TABLE_NOTES)
        note = rng.choice([f" Note for the restaurant: {args['notes']}.",
                           f" Please add a note: {args['notes']}.", f" (Notes: {args['notes']}.)"])
    q = c.say(["Book a table at {r} for {n} on {d} at {t}.{note}",
               "Can you reserve {r} for {n} people, {d}, {t}?{note}",
               "I need a table for {n} at {r} on {d} at {t}.{note}",
               "Reserve a table for {n} at {r}: {d} at {t}.{note}",
               "table for {n} at {r}, {d} {t} please.{note}",
               "We're {n} people and want to eat at {r} on {d} at {t}. Can you book it?{note}",
               "Get us a reservation at {r} on {d} at {t} for {n}.{note}",
               "Could you book {r} for {d}, {t}, party of {n}?{note}"],
              r=name, n=n, d=d, t=t, note=note)
    return Case(q, [("book_table", args)], lambda rs: rng.choice([
        f"You're booked at {rs[0]['restaurant']} on {rs[0]['weekday']}, {rs[0]['date']} at {rs[0]['time']} "
        f"for {rs[0]['party_size']}. Confirmation: {rs[0]['confirmation']}.",
        f"Table reserved! {rs[0]['restaurant']}, {rs[0]['date']} ({rs[0]['weekday']}) at {rs[0]['time']}, "
        f"party of {rs[0]['party_size']} - confirmation {rs[0]['confirmation']}.",
    ]) + (" I passed on your note." if "notes" in rs[0] else ""))


CONTACTS = [name for name in TB._CONTACTS if name != "Team"]
MESSAGES = [
    "Running 10 minutes late, sorry!", "Can you pick up milk on the way home?",
    "Happy birthday! Have a great day.", "The meeting moved to 3pm.", "I landed safely.",
    "Dinner is at 7, don't forget.", "Call me when you get a chance.",
    "I left the keys under the mat.", "Are we still on for tomorrow?",
    "Thanks for the lovely evening!", "The package arrived today.",
    "Can you send me the photos from the trip?", "I'll be home late tonight.",
    "Don't forget your dentist appointment at 4.", "Good luck with the exam!",
    "The rent is paid for this month.", "Let's meet at the cafe at noon.",
    "Please bring the charger back.", "See you at the station at 8.",
    "I fixed the sink, it works now.",
]


def gen_send_message(c: Ctx) -> Case:
    rng = c.rng
    to, body = c.pick(CONTACTS), c.pick(MESSAGES)
    args: dict[str, Any] = {"to": to, "body": body}
    urgent = ""
    if c.optional():
        args["urgent"] = True
        urgent = rng.choice([" Mark it as urgent.", " It's urgent.", " (urgent)",
                             " Flag it urgent please."])
    q = c.say(["Text {to}: \"{body}\"{u}", "Send a message to {to} saying \"{body}\"{u}",
               "Message {to}: {body}{u}", "Can you text {to} \"{body}\"?{u}",
               "Please send this to {to}: {body}{u}", "Shoot {to} a quick text: \"{body}\"{u}",
               "Write to {to}: \"{body}\"{u}", "send msg to {to} - {body}{u}"],
              to=to, body=body, u=urgent)
    return Case(q, [("send_message", args)], lambda rs: rng.choice([
        f"Sent to {rs[0]['to']} ({rs[0]['number']}).", f"Your message to {rs[0]['to']} is on its way.",
        f"Done - {rs[0]['to']} will get it shortly.",
    ]) + (" It's marked as urgent." if rs[0]["urgent"] else ""))


TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "To be, or not to be, that is the question.",
    "We shipped the new release on Friday. Nobody noticed the bug until Monday!",
    "Rain again today. The garden is happy, the cat is not.",
    "Please remember to lock the door when you leave. The spare key is in the drawer.",
    "I came, I saw, I conquered.",
    "Tea or coffee? Coffee, always coffee. Maybe tea on Sundays.",
    "All that glitters is not gold.",
    "Our meeting starts at nine. Bring the quarterly numbers and a fresh idea or two.",
    "The train was late, the coffee was cold, and the meeting ran long. Still, a good day.",
    "Knowledge is power. France is bacon.",
    "She sells sea shells by the sea shore.",
    "A journey of a thousand miles begins with a single step.",
    "Welcome to the team! Your laptop is on your desk and your badge is at reception.",
    "The museum opens at ten and closes at six. Tickets are free on Sundays.",
    "Keep calm and carry on.",
]


def gen_text_stats(c: Ctx) -> Case:
    rng = c.rng
    text = c.pick(TEXTS)
    args: dict[str, Any] = {"text": text}
    if c.optional():
        n = rng.randint(2, 5)
        args["top_words"] = n
        q = c.say(["What are the {n} most common words in \"{text}\"?",
                   "Give me the word count and the top {n} words of this: {text}",
                   "Which {n} words appear most often here? \"{text}\"",
                   "Analyze this text and list its {n} most frequent words: \"{text}\""],
                  n=n, text=text)

        def answer(rs: list) -> str:
            top = listing([f"\"{w}\" ({k})" for w, k in rs[0]["top_words"]])
            return f"It has {rs[0]['words']} words; the most frequent are {top}."
    else:
        what = rng.choice(["words", "characters", "sentences", "letters"])
        q = c.say(["How many {what} are in \"{text}\"?", "Count the {what} in this: {text}",
                   "How many {what} does this have? \"{text}\"",
                   "Give me the number of {what} in \"{text}\"",
                   "{what} count for: {text}", "Can you count the {what}? \"{text}\"",
                   "I need a {what} count of \"{text}\"",
                   "Tell me how many {what} there are in: {text}"], what=what, text=text)

        def answer(rs: list) -> str:
            return rng.choice([f"That text has {rs[0][what]} {what}.",
                               f"{rs[0][what]} {what} ({rs[0]['words']} words, "
                               f"{rs[0]['characters']} characters in all)."])
    return Case(q, [("text_stats", args)], answer)


SYMBOLS = list(TB._QUOTES)
STOCK_CURRENCY = {"EUR": ["euros", "EUR"], "GBP": ["pounds", "GBP"], "USD": ["dollars", "USD"]}


def gen_get_stock_quotes(c: Ctx) -> Case:
    rng = c.rng
    symbols = c.sample(SYMBOLS, rng.choice([1, 1, 1, 2, 2, 3]))
    syms = listing(symbols)
    args: dict[str, Any] = {"symbols": symbols}
    cur = ""
    if c.optional():
        code = rng.choice(["EUR", "EUR", "GBP", "GBP", "USD"])
        args["currency"] = code
        cur = f" in {rng.choice(STOCK_CURRENCY[code])}"
    q = c.say(["What's the price of {s}{cur}?", "How is {s} doing today{cur}?",
               "Get me quotes for {s}{cur}.", "stock price {s}{cur}", "Check {s} for me{cur}.",
               "How much is {s} trading at{cur}?", "Look up {s} stock{cur}.",
               "What are the latest prices for {s}{cur}?", "quote {s}{cur} pls",
               "Can you pull up {s}{cur}?", "Where is {s} trading right now{cur}?",
               "Show me {s} share prices{cur}."], s=syms, cur=cur)

    def answer(rs: list) -> str:
        parts = []
        for quote in rs[0]:
            sign = {"USD": "$", "EUR": "€", "GBP": "£"}[quote["currency"]]
            parts.append(f"{quote['symbol']} ({quote['company']}) is at {sign}{quote['price']:,.2f}, "
                         f"{quote['change_percent']:+}% today")
        return cap("; ".join(parts)) + "."
    return Case(q, [("get_stock_quotes", args)], answer)


TASKS = [
    "call the dentist", "take the laundry out", "water the plants", "check the oven",
    "join the team call", "pick up the kids", "take my medicine", "stretch",
    "pay the electricity bill", "move the car", "send the invoice", "buy a birthday card",
    "book the vet", "drink some water", "charge my phone", "feed the cat",
    "submit the report", "call Grandma back", "start the dishwasher", "leave for the airport",
]
WHEN = [  # (phrase, minutes)
    ("in 5 minutes", 5), ("in 10 minutes", 10), ("in a quarter of an hour", 15),
    ("in 20 minutes", 20), ("in half an hour", 30), ("in 45 minutes", 45), ("in an hour", 60),
    ("in 90 minutes", 90), ("in an hour and a half", 90), ("in 2 hours", 120),
    ("in three hours", 180), ("in 4 hours", 240), ("in 6 hours", 360), ("in 12 hours", 720),
    ("in a day", 1440), ("in 24 hours", 1440), ("in two days", 2880), ("in 3 days", 4320),
    ("in a week", 10080), ("in 25 minutes", 25), ("in 40 minutes", 40), ("in 2 and a half hours", 150),
    ("in 8 hours", 480), ("in 75 minutes", 75),
]
REPEAT_WORDS = {"daily": [", and repeat it every day", ", every day after that", " - make it daily"],
                "weekly": [", repeating weekly", ", and then every week", " - make it a weekly reminder"],
                "none": [", just once", " (one time only)", ", no repeat"]}


def gen_set_reminder(c: Ctx) -> Case:
    rng = c.rng
    task = c.pick(TASKS)
    when, minutes = c.pick(WHEN)
    args: dict[str, Any] = {"text": task, "minutes_from_now": minutes}
    rep = ""
    if c.optional():
        repeat = rng.choice(["daily", "daily", "weekly", "weekly", "none"])
        args["repeat"] = repeat
        rep = rng.choice(REPEAT_WORDS[repeat])
    q = c.say(["Remind me to {task} {when}{rep}.", "Set a reminder {when} to {task}{rep}.",
               "Can you remind me {when} to {task}{rep}?", "{When}, remind me to {task}{rep}.",
               "I need a reminder to {task} {when}{rep}.", "Ping me {when} to {task}{rep}.",
               "Don't let me forget to {task} - remind me {when}{rep}.",
               "reminder: {task}, {when}{rep}"],
              task=task, when=when, When=cap(when), rep=rep)
    return Case(q, [("set_reminder", args)], lambda rs: rng.choice([
        f"Okay! I'll remind you to {task} in {rs[0]['due_in']}.",
        f"Reminder set: \"{task}\" in {rs[0]['due_in']}.",
    ]) + {"none": "", "daily": " It repeats every day.", "weekly": " It repeats every week."}[rs[0]["repeat"]])


def gen_score_summary(c: Ctx) -> Case:
    rng = c.rng
    scores = [rng.randint(28, 100) for _ in range(rng.randint(4, 10))]
    s = ", ".join(map(str, scores))
    args: dict[str, Any] = {"scores": scores}
    bar = 50
    extra = ""
    if c.optional():
        bar = rng.choice([40, 55, 60, 65, 70, 75])
        args["passing_score"] = bar
        extra = rng.choice([f" The pass mark is {bar}.", f" (passing is {bar})",
                            f" Count {bar} or more as a pass.", f" Anything below {bar} fails."])
    q = c.say(["Here are my students' scores: {s}. Can you summarize them?{x}",
               "Summarize these test scores: {s}.{x}",
               "What's the average, lowest and highest of these scores: {s}?{x}",
               "My class got {s} on the quiz. How did they do?{x}",
               "scores: {s}. stats please{x}", "How many passed? The scores were {s}.{x}",
               "Give me a summary of these exam results: {s}.{x}",
               "Quiz results are in: {s}. Average and pass count?{x}"], s=s, x=extra)
    return Case(q, [("score_summary", args)], lambda rs: rng.choice([
        f"The average is {fmt(rs[0]['mean'])} (median {fmt(rs[0]['median'])}), scores range from "
        f"{rs[0]['min']} to {rs[0]['max']}, and {rs[0]['passed']} of {rs[0]['count']} passed with a pass mark of {bar}.",
        f"{rs[0]['passed']} of {rs[0]['count']} passed (pass mark {bar}). Mean {fmt(rs[0]['mean'])}, "
        f"lowest {rs[0]['min']}, highest {rs[0]['max']}.",
    ]))


# ---------------------------------------------------------------------------
# Held-out tools (toolbox.py): only ever in calls_test.jsonl
# ---------------------------------------------------------------------------

DESTINATIONS = {
    "US": ["the US", "the United States"], "CA": ["Canada"], "MX": ["Mexico"],
    "GB": ["the UK", "Britain", "England"], "DE": ["Germany"], "FR": ["France"], "ES": ["Spain"],
    "IT": ["Italy"], "JP": ["Japan"], "AU": ["Australia"], "BR": ["Brazil"], "IN": ["India"],
}


def gen_shipping_cost(c: Ctx) -> Case:
    rng = c.rng
    code = c.pick(list(DESTINATIONS))
    place = rng.choice(DESTINATIONS[code])
    weight: float | int = rng.choice([rng.randint(1, 25), round(rng.uniform(0.2, 12), 1)])
    shown = fmt(weight)
    w = rng.choice([f"{shown} kg", f"{shown}kg", f"{shown} kilo" + ("" if weight == 1 else "s"),
                    f"{shown} kilogram" + ("" if weight == 1 else "s")])  # "send 5 kilos"
    wa = rng.choice([f"{shown} kg", f"{shown}kg", f"{shown}-kilo", f"{shown}-kilogram"])  # "a 5-kilo parcel"
    args: dict[str, Any] = {"weight_kg": weight, "destination": code}
    how = ""
    if c.optional():
        args["express"] = rng.random() < 0.8
        how = rng.choice([" by express", " with express shipping", " using express delivery"]) \
            if args["express"] else rng.choice([" by standard shipping", " with regular (not express) delivery"])
    q = c.say(["How much does it cost to ship a {wa} parcel to {place}{how}?",
               "What's the shipping price for {w} to {place}{how}?",
               "Quote me shipping for a {wa} box going to {place}{how}.",
               "I need to send {w} to {place}{how}. How much?",
               "shipping cost to {place} for {w}{how}?",
               "How much to mail a {wa} package to {place}{how}, and how long will it take?",
               "What would it cost to send a parcel of {w} to {place}{how}?",
               "Can you price a {wa} shipment to {place}{how}?"], w=w, wa=wa, place=place, how=how)
    return Case(q, [("shipping_cost", args)], lambda rs: rng.choice([
        f"Sending {w} to {place} by {rs[0]['service']} shipping costs {money(rs[0]['cost_usd'])} and takes about "
        f"{rs[0]['delivery_days']} days.",
        f"That's {money(rs[0]['cost_usd'])} ({rs[0]['service']}, about {rs[0]['delivery_days']} days).",
    ]))


LANGUAGE_NAMES = {"es": "Spanish", "fr": "French", "de": "German", "it": "Italian", "pt": "Portuguese"}
LANGUAGE_PLACES = {"es": ["Spain", "Mexico"], "fr": ["France"], "de": ["Germany", "Austria"],
                   "it": ["Italy"], "pt": ["Brazil", "Portugal"]}


def gen_translate_word(c: Ctx) -> Case:
    rng = c.rng
    word = c.pick(list(TB._DICTIONARY))
    lang = rng.choice(list(LANGUAGE_NAMES))
    if rng.random() < 0.2:
        q = c.say(["I'm traveling to {place}. How do I say \"{w}\" there?",
                   "Going to {place} next week - what's \"{w}\" in the local language?",
                   "How would people in {place} say {w}?",
                   "What's the word for {w} in {place}?"], place=rng.choice(LANGUAGE_PLACES[lang]), w=word)
    else:
        q = c.say(["How do you say {w} in {lang}?", "Translate '{w}' into {lang}.",
                   "What's the {lang} word for {w}?", "{w} in {lang}?",
                   "What is \"{w}\" in {lang}?", "Can you translate {w} to {lang} for me?",
                   "how do i say {w} in {lang}", "{lang} for \"{w}\", please."],
                  w=word, lang=LANGUAGE_NAMES[lang])
    args = {"word": word, "target_language": lang}
    return Case(q, [("translate_word", args)], lambda rs: rng.choice([
        f"\"{word}\" in {LANGUAGE_NAMES[lang]} is \"{rs[0]['translation']}\".",
        f"In {LANGUAGE_NAMES[lang]} you'd say \"{rs[0]['translation']}\".",
    ]))


EVENT_TITLES = [
    "Dentist appointment", "Team sync", "Lunch with Sara", "Project kickoff", "Yoga class",
    "Parent-teacher meeting", "Book club", "1:1 with Dana", "Quarterly review", "Coffee with Leo",
    "Guitar lesson", "Sprint planning", "Car service", "Haircut", "Budget review", "Interview prep",
]
ATTENDEES = ["Sara", "Leo", "Dana", "Priya", "Marcus", "Ines", "Kenji", "Zoe", "Hugo", "Amara",
             "sara@example.com", "leo.w@example.com", "team@example.com"]
DURATIONS = [  # (phrase, minutes)
    ("for 15 minutes", 15), ("for 30 minutes", 30), ("for half an hour", 30), ("for 45 minutes", 45),
    ("for an hour", 60), ("for 90 minutes", 90), ("for 2 hours", 120), ("for three hours", 180),
    ("lasting 20 minutes", 20), ("lasting an hour and a half", 90),
]


def gen_create_event(c: Ctx) -> Case:
    rng = c.rng
    title = c.pick(EVENT_TITLES)
    day = pick_date(rng)
    start = rng.randrange(7 * 4, 20 * 4) * 15
    d, t = say_date(rng, day), say_time(rng, start)
    args: dict[str, Any] = {"title": title, "date": day.isoformat(), "start_time": hhmm(start)}
    extras = []
    if c.optional():
        chosen = rng.choice([["duration"], ["attendees"], ["duration", "attendees"]])
        if "duration" in chosen:
            phrase, minutes = rng.choice(DURATIONS)
            args["duration_minutes"] = minutes
            extras.append(f" {phrase}")
        if "attendees" in chosen:
            people = rng.sample(ATTENDEES, rng.randint(1, 3))
            args["attendees"] = people
            extras.append(rng.choice([f" and invite {listing(people)}", f", invite {listing(people)}",
                                      f" with {listing(people)} invited"]))
    x = "".join(extras)
    q = c.say(["Add {title} to my calendar on {d} at {t}{x}.",
               "Schedule \"{title}\" for {d} at {t}{x}.",
               "Create an event called {title} on {d}, starting {t}{x}.",
               "Put \"{title}\" in my calendar: {d}, {t}{x}.",
               "Can you set up \"{title}\" on {d} at {t}{x}?",
               "new event: {title}, {d} {t}{x}",
               "Please block {d} at {t} for \"{title}\"{x}.",
               "I have {title} on {d} at {t}. Add it to the calendar{x}."],
              title=title, d=d, t=t, x=x)

    def answer(rs: list) -> str:
        r = rs[0]
        who = f" Invites went to {listing(r['attendees'])}." if r["attendees"] else ""
        return rng.choice([f"Added \"{r['title']}\" on {r['weekday']}, {r['date']} from {r['start']} to {r['end']}.",
                           f"\"{r['title']}\" is in your calendar for {r['date']}, {r['start']}-{r['end']}."]) + who
    return Case(q, [("create_event", args)], answer)


FLIGHTS = list(TB._FLIGHTS)


def gen_flight_status(c: Ctx) -> Case:
    rng = c.rng
    flight = c.pick(FLIGHTS)
    day = pick_date(rng)
    d = say_date(rng, day)
    q = c.say(["Is flight {f} on time on {d}?", "What's the status of {f} on {d}?",
               "Check flight {f} for {d}.", "Is {f} delayed on {d}?",
               "My flight is {f} on {d}. Any delays?", "flight {f} {d} status?",
               "Can you look up {f} departing {d}?", "Has {f} on {d} been cancelled?"], f=flight, d=d)

    def answer(rs: list) -> str:
        r = rs[0]
        route = f"{r['from']} to {r['to']}"
        if r["status"] == "cancelled":
            return f"{r['airline']} {r['flight_number']} ({route}) on {r['date']} is cancelled."
        if r["status"] == "delayed":
            return (f"{r['flight_number']} ({route}) on {r['date']} is delayed by {r['delay_minutes']} minutes: "
                    f"it should leave at {r['expected_departure']} instead of {r['scheduled_departure']}.")
        return rng.choice([f"{r['flight_number']} on {r['date']} is on time, departing {r['from']} at "
                           f"{r['scheduled_departure']}.",
                           f"Good news: {r['airline']} {r['flight_number']} ({route}) is on time for "
                           f"{r['scheduled_departure']}."])
    args = {"flight_number": flight, "date": day.isoformat()}
    return Case(q, [("flight_status", args)], answer)


BILL_ITEMS = ["pizza", "salad", "drinks", "dessert", "pasta", "wine", "tacos", "burgers", "sushi",
              "fries", "coffee", "beer", "nachos", "soup", "steak", "curry"]


def gen_split_bill(c: Ctx) -> Case:
    rng = c.rng
    names = rng.sample(c.pool(BILL_ITEMS), rng.randint(2, 4))
    items = []
    for name in names:
        amount: float | int = rng.randint(4, 60)
        if rng.random() < 0.4:
            amount = amount + rng.choice([0.5, 0.25, 0.75, 0.99])
        items.append({"description": name, "amount": amount})
    people = rng.randint(2, 8)
    lines = listing([rng.choice([f"{i['description']} ({dollars(i['amount'])})",
                                 f"{i['description']} for {dollars(i['amount'])}",
                                 f"{dollars(i['amount'])} of {i['description']}"]) for i in items])
    args: dict[str, Any] = {"items": items, "people": people}
    tip = ""
    if c.optional():
        pct = rng.choice([10, 12, 15, 18, 20, 22.5])
        args["tip_percent"] = pct
        tip = rng.choice([f", plus a {fmt(pct)}% tip", f" and add {fmt(pct)}% for the tip",
                          f", with a {fmt(pct)} percent tip"])
    n = say_count(rng, people)
    q = c.say(["Split our bill: {lines}. There are {n} of us{tip}.",
               "We had {lines}. How much does each of the {n} of us owe{tip}?",
               "Can you divide this between {n} people{tip}? {lines}.",
               "{n} friends, the bill was {lines}. Split it evenly{tip}.",
               "split the check {n} ways{tip}: {lines}",
               "How much per person if {n} of us share {lines}{tip}?",
               "Our order: {lines}. Split it {n} ways{tip}, please.",
               "Work out what each of {n} people pays for {lines}{tip}."],
              lines=lines, n=n, tip=tip)
    return Case(q, [("split_bill", args)], lambda rs: rng.choice([
        f"The total is {money(rs[0]['total'])} ({money(rs[0]['subtotal'])} plus {money(rs[0]['tip'])} tip), "
        f"so each of the {people} of you pays {money(rs[0]['per_person'])}.",
        f"Each person pays {money(rs[0]['per_person'])} (total {money(rs[0]['total'])} for {people}).",
    ]))


GENERATORS: dict[str, Callable[[Ctx], Case]] = {
    "calculate": gen_calculate, "convert_units": gen_convert_units, "get_weather": gen_get_weather,
    "convert_currency": gen_convert_currency, "convert_time": gen_convert_time,
    "days_between": gen_days_between, "search_products": gen_search_products,
    "place_order": gen_place_order, "book_table": gen_book_table, "send_message": gen_send_message,
    "text_stats": gen_text_stats, "get_stock_quotes": gen_get_stock_quotes,
    "set_reminder": gen_set_reminder, "score_summary": gen_score_summary,
    "shipping_cost": gen_shipping_cost, "translate_word": gen_translate_word,
    "create_event": gen_create_event, "flight_status": gen_flight_status,
    "split_bill": gen_split_bill,
}

# Tools that can sensibly be called twice in one message (two cities, two amounts, ...).
PAIRABLE = ["calculate", "convert_units", "get_weather", "convert_currency", "convert_time",
            "days_between", "send_message", "set_reminder", "text_stats", "shipping_cost",
            "translate_word", "flight_status", "create_event"]

# ---------------------------------------------------------------------------
# Parallel requests, no-call requests, system prompts
# ---------------------------------------------------------------------------

LOWER_STARTS = {"What", "What's", "How", "Can", "Could", "Please", "Convert", "Tell", "Is", "Do",
                "Check", "Find", "Look", "Get", "Send", "Set", "Remind", "Book", "Reserve", "Add",
                "Schedule", "Put", "Count", "Summarize", "Translate", "Split", "Multiply",
                "Calculate", "Work", "Quick", "Text", "Message", "Search", "Show", "Order", "Place",
                "Buy", "Exchange", "Shoot", "Write", "Change", "Give", "If", "When", "My", "Any",
                "Ping", "Divide", "Raise", "Quote", "Has", "Create", "Block", "Here", "Compute",
                "Subtract", "Average", "Apply", "Take", "Current", "Where", "Which", "Analyze",
                "Table", "Our", "Going", "Don't", "Reminder", "Would"}


def lower_first(text: str) -> str:
    first = text.split(" ", 1)[0].rstrip(",:?")
    return text[:1].lower() + text[1:] if first in LOWER_STARTS else text


def join_requests(rng: random.Random, q1: str, q2: str) -> str:
    if q1[-1:] in ".?!":
        return q1 + " " + rng.choice(["Also, {l}", "And {l}", "Plus, {l}", "{q}", "Oh, and {l}",
                                      "One more thing: {l}"]).format(l=lower_first(q2), q=q2)
    return q1 + rng.choice([", and {l}", " and also {l}", "; also {l}", ". {q}"]).format(
        l=lower_first(q2), q=q2)


def merge(rng: random.Random, a: Case, b: Case) -> Case:
    n = len(a.calls)
    return Case(join_requests(rng, a.user, b.user), a.calls + b.calls,
                lambda rs: a.answer(rs[:n]) + " " + b.answer(rs[n:]))


SMALL_TALK_GREET = [
    "Hi!", "hello", "Hey there!", "Good morning!", "hey, how are you?", "Hi, anyone there?",
    "Hello! How's your day going?", "yo", "Good evening.", "Hiya!", "Morning!", "hi :)",
    "Hello there.", "Hey, what's up?", "Good afternoon!", "heyyy",
]
SMALL_TALK_THANKS = [
    "Thanks!", "thank you so much", "cheers, that's all", "Great, thanks for the help!",
    "perfect, thanks", "ok thx", "That's all I needed, thank you.", "Awesome, thank you!",
    "thanks a lot", "Brilliant, cheers.", "Nice, thanks!", "Thank you, bye!",
]
SMALL_TALK_HELP = [
    "What can you do?", "What tools do you have?", "How can you help me?", "what are you able to do",
    "What kind of things can you help with?", "What are your capabilities?",
    "Which tasks can you handle?", "what can i ask you", "What do you do?", "Help",
    "What can you help me with today?", "Tell me what you can do.",
]
SMALL_TALK_WHO = [
    "Who are you?", "Are you a human?", "What's your name?", "Are you a bot?", "who am i talking to",
    "Are you a real person?", "What are you?", "Introduce yourself.",
]
KNOWLEDGE = [
    ("What's the capital of Japan?", "The capital of Japan is Tokyo."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("How many sides does a hexagon have?", "A hexagon has six sides."),
    ("What does CPU stand for?", "CPU stands for central processing unit."),
    ("Is a tomato a fruit?", "Botanically, yes: a tomato is a fruit, though it's usually cooked as a vegetable."),
    ("What's the largest planet in our solar system?", "Jupiter is the largest planet in our solar system."),
    ("How many continents are there?", "There are seven continents."),
    ("What language is spoken in Brazil?", "The official language of Brazil is Portuguese."),
    ("What's the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What's the boiling point of water at sea level in Celsius?", "Water boils at 100 °C at sea level."),
]
OUT_OF_SCOPE = [
    "Can you order me a taxi to the airport?", "Turn off the living room lights.",
    "Play some jazz.", "Check my email inbox.", "Post this photo on Instagram for me.",
    "Call an Uber to my place.", "What's on TV tonight?", "Pay my credit card bill.",
    "Open the garage door.", "Read me today's news headlines.", "Unlock my car.",
    "Book a hotel room in Rome for next weekend.", "Write a poem about the sea.",
    "Can you renew my passport?", "Set the thermostat to 21 degrees.", "Find me a good dentist nearby.",
    "Turn on the sprinklers in the garden.", "Record the football match tonight.",
    "Tell me the latest sports scores.", "Download the new season of my show.",
    "Can you fix my Wi-Fi?", "Cancel my gym membership.", "Start the robot vacuum.",
    "Turn up the volume on the TV.",
]

SYSTEMS: list[tuple[str, str | None]] = [  # (prompt, the persona's name if it has one)
    ("You are a helpful assistant.", None),
    ("You are a helpful assistant with access to tools. Call a tool when it helps you answer.", None),
    ("You can call functions to help the user. Only call a function when the request needs it, "
     "and fill its arguments from what the user said.", None),
    ("You are Orbit, a friendly personal assistant. Keep answers short.", "Orbit"),
    ("You are a concise assistant. Use the tools when they give a better answer than guessing.", None),
    ("You are Juniper, an assistant for busy people. Use your tools for facts and numbers; never guess them.",
     "Juniper"),
    ("Answer briefly. If none of the tools fits the request, say so.", None),
    ("You're a helpful assistant.", None),
    ("You are an AI assistant. Use the provided functions when needed and reply in plain language.", None),
    ("You are Pip, a cheerful helper. Be brief and friendly.", "Pip"),
    ("You are a careful assistant. Read each tool's description and parameters before calling it.", None),
    ("You are Atlas, an assistant that gets things done with the tools you are given.", "Atlas"),
]


def can_do(names: list[str]) -> str:
    return listing([CAN[n] for n in names])


def no_call_case(c: Ctx, pool: list[str], persona: str | None) -> tuple[Case, list[str]]:
    """A request that no offered tool fits (or small talk), answered in text."""
    rng = c.rng
    roll = rng.random()
    if roll < 0.35:
        offered = offer(c, [], pool)
        caps = can_do(offered)
        me = f"I'm {persona}, an AI assistant" if persona else "I'm an AI assistant"
        kind = rng.choice(["greet", "thanks", "help", "who", "fact"])
        if kind == "greet":
            user = c.pick(SMALL_TALK_GREET)
            text = rng.choice(["Hello! How can I help you today?", f"Hi! I can {caps}. What do you need?",
                               "Hey! What can I do for you?"])
        elif kind == "thanks":
            user = c.pick(SMALL_TALK_THANKS)
            text = rng.choice(["You're welcome!", "Happy to help!", "Anytime - have a great day!"])
        elif kind == "help":
            user = c.pick(SMALL_TALK_HELP)
            text = rng.choice([f"I can {caps}. Just tell me what you need.",
                               f"With the tools I have here, I can {caps}."])
        elif kind == "who":
            user = c.pick(SMALL_TALK_WHO)
            text = f"{me}. Here I can {caps}."
        else:
            user, text = c.pick(KNOWLEDGE)
        return Case(user, [], lambda rs: text), offered
    if roll < 0.65:
        offered = offer(c, [], pool)
        user = c.pick(OUT_OF_SCOPE)
        caps = can_do(offered)
        text = rng.choice([f"Sorry, I can't do that with the tools I have here. I can {caps}.",
                           f"That's outside what I can do right now - my tools only let me {caps}.",
                           f"I'm not able to help with that here. I can {caps}, though."])
        return Case(user, [], lambda rs: text), offered
    # a request for a tool of this split that is not offered
    target = rng.choice([t for t in pool if t != "calculate"])
    request = GENERATORS[target](c)
    offered = offer(c, [], [t for t in pool if t not in (target, "calculate")])
    caps = can_do(offered)
    text = rng.choice([f"Sorry, I don't have a way to {CAN[target]} here. I can {caps}.",
                       f"I can't {CAN[target]} with the tools available to me. I can {caps}, if that helps.",
                       f"None of my tools can {CAN[target]}, so I can't do that. I can {caps}."])
    return Case(request.user, [], lambda rs: text), offered


def offer(c: Ctx, needed: list[str], pool: list[str]) -> list[str]:
    """The needed tools plus distractors from the same split: 2 to 5 in all, shuffled."""
    rng = c.rng
    total = rng.randint(max(2, len(needed)), 5)
    others = [t for t in pool if t not in needed
              and not any(frozenset({t, n}) in CONFLICTS for n in needed)]
    tools = list(dict.fromkeys(needed)) + rng.sample(others, min(len(others), total - len(set(needed))))
    rng.shuffle(tools)
    return tools


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


def tool_content(value: Any) -> str:
    """What the tool message says: JSON for dicts and lists (as agentsft's Toolkit writes it)."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)


def conversation(case: Case, offered: list[str], system: str | None) -> list[dict]:
    messages: list[dict] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": case.user})
    if not case.calls:
        messages.append({"role": "assistant", "content": case.answer([])})
        return messages
    tool_calls, results, replies = [], [], []
    for i, (name, args) in enumerate(case.calls, start=1):
        assert name in offered, (name, offered)
        args = ordered(args, params(name))
        value = FUNCS[name](**args)  # a ValueError here is a bug in this generator
        call_id = f"call_{i}"
        tool_calls.append({"id": call_id, "type": "function",
                           "function": {"name": name, "arguments": args}})
        replies.append({"role": "tool", "tool_call_id": call_id, "name": name,
                        "content": tool_content(value)})
        results.append(value)
    messages.append({"role": "assistant", "content": "", "tool_calls": tool_calls})
    messages.extend(replies)
    messages.append({"role": "assistant", "content": case.answer(results)})
    return messages


def plan(rng: random.Random, n_single: int, n_parallel: int, n_none: int) -> list[str]:
    kinds = ["single"] * n_single + ["parallel"] * n_parallel + ["no_call"] * n_none
    rng.shuffle(kinds)
    return kinds


def deck(rng: random.Random, tools: list[str]):
    """Tool names in shuffled rounds, so every tool gets about the same share."""
    while True:
        round_ = list(tools)
        rng.shuffle(round_)
        yield from round_


def build_split(rng: random.Random, mode: str, pool: list[str], kinds: list[str],
                prefix: str, taken: set[str], counts: dict[str, int]) -> list[dict]:
    """Records of one kind of data (train, held-out tools or seen tools with new pools)."""
    c = Ctx(rng, mode)
    singles, firsts = deck(rng, pool), deck(rng, pool)
    records = []
    for number, kind in enumerate(kinds, start=1):
        for _ in range(200):
            system_roll = rng.random()
            sys_prompt, persona = c.pick(SYSTEMS) if system_roll < 0.3 else (None, None)
            if kind == "single":
                name = next(singles)
                case = GENERATORS[name](c)
                offered = offer(c, [name], pool)
            elif kind == "parallel":
                first = next(firsts)
                if first in PAIRABLE and rng.random() < 0.5:
                    second = first
                else:
                    second = rng.choice([t for t in pool if t != first
                                         and frozenset({t, first}) not in CONFLICTS])
                a = GENERATORS[first](c)
                b = GENERATORS[second](c)
                if a.calls == b.calls:
                    continue
                case = merge(rng, a, b)
                offered = offer(c, [first, second], pool)
            else:
                case, offered = no_call_case(c, pool, persona)
            if case.user not in taken:
                break
        else:
            raise RuntimeError(f"could not find a new {kind} request for {prefix}")
        taken.add(case.user)
        messages = conversation(case, offered, sys_prompt)
        records.append({"id": f"{prefix}-{number:04d}", "messages": messages,
                        "tools": [SCHEMAS[t] for t in offered]})
        counts[kind] += 1
        counts["system"] += sys_prompt is not None
        for name, args in case.calls:
            if has_optional(name):
                counts["optional_possible"] += 1
                counts["optional_given"] += gives_optional(name, args)
    return records


def new_counts() -> dict[str, int]:
    return dict.fromkeys(["single", "parallel", "no_call", "system", "optional_possible",
                          "optional_given"], 0)


def build(seed: int) -> dict[str, tuple[list[dict], dict[str, int]]]:
    """{file name: (records, counts)}; train first, so test requests can avoid its strings."""
    taken: set[str] = set()
    rng = random.Random(f"{seed}:calls:train")
    train_counts = new_counts()
    train = build_split(rng, "train", TRAIN_TOOLS, plan(rng, 320, 40, 40), "train", taken, train_counts)
    rng = random.Random(f"{seed}:calls:test")
    test_counts = new_counts()
    unseen = build_split(rng, "open", HELD_OUT, plan(rng, 80, 10, 10), "unseen-tool", taken, test_counts)
    seen = build_split(rng, "heldout", TRAIN_TOOLS, plan(rng, 40, 5, 5), "seen-tool", taken, test_counts)
    test_counts["unseen_tool"], test_counts["seen_tool"] = len(unseen), len(seen)
    return {"calls_train.jsonl": (train, train_counts), "calls_test.jsonl": (unseen + seen, test_counts)}


def write(seed: int, out: Path) -> None:
    for name, (records, counts) in build(seed).items():
        path = out / name
        MX.write_jsonl(path, records)
        detail = ", ".join(f"{k}={v}" for k, v in counts.items())
        print(f"wrote {path}: {len(records)} records ({detail})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: this script's folder)")
    args = parser.parse_args(argv)
    write(args.seed, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

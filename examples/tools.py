"""Three small, self-contained tools used by the example data.

Every tool result in the example ``.jsonl`` files was produced by calling
these functions (see ``make_examples.py``). They use only the standard
library and have no side effects at import time.
"""

from __future__ import annotations

import ast
import math
import operator

__all__ = ["calculate", "convert_units", "get_weather", "TOOLS"]


# ---------------------------------------------------------------------------
# calculate
# ---------------------------------------------------------------------------

_MAX_EXPRESSION_CHARS = 500
_MAX_EXPONENT = 100
_MAX_RESULT_BITS = 4000  # integer results larger than ~1200 digits are refused

_BINARY_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}

_UNARY_OPS = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}

_OP_SYMBOLS = {
    ast.BitXor: "^ (use ** for powers)",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
    ast.Invert: "~",
    ast.Not: "not",
}


def _check_number(value: int | float) -> int | float:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("result is too large or not a finite number")
    if isinstance(value, int) and value.bit_length() > _MAX_RESULT_BITS:
        raise ValueError("result is too large")
    return value


def _power(base: int | float, exponent: int | float) -> int | float:
    if abs(exponent) > _MAX_EXPONENT:
        shown = str(exponent) if len(str(exponent)) <= 20 else "this large"
        raise ValueError(
            f"exponent {shown} is too large (the limit is {_MAX_EXPONENT})"
        )
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if base.bit_length() * exponent > _MAX_RESULT_BITS:
            raise ValueError("result is too large")
    if base == 0 and exponent < 0:
        raise ValueError("zero cannot be raised to a negative power")
    try:
        result = base**exponent
    except OverflowError:
        raise ValueError("result is too large") from None
    if isinstance(result, complex):
        raise ValueError(
            "a negative number raised to a fractional power has no real result"
        )
    return result


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"unsupported value {value!r}; only numbers are allowed")
        return _check_number(value)
    if isinstance(node, ast.UnaryOp):
        op = _UNARY_OPS.get(type(node.op))
        if op is None:
            symbol = _OP_SYMBOLS.get(type(node.op), type(node.op).__name__)
            raise ValueError(f"unsupported operator {symbol}")
        return op(_evaluate(node.operand))
    if isinstance(node, ast.BinOp):
        op_type = type(node.op)
        if op_type not in _BINARY_OPS:
            symbol = _OP_SYMBOLS.get(op_type, op_type.__name__)
            raise ValueError(f"unsupported operator {symbol}")
        left = _evaluate(node.left)
        right = _evaluate(node.right)
        if op_type is ast.Pow:
            return _check_number(_power(left, right))
        if op_type in (ast.Div, ast.FloorDiv, ast.Mod) and right == 0:
            raise ValueError("division by zero")
        try:
            return _check_number(_BINARY_OPS[op_type](left, right))
        except OverflowError:
            raise ValueError("result is too large") from None
    if isinstance(node, ast.Name):
        raise ValueError(f"unknown name {node.id!r}; only numbers and operators are allowed")
    if isinstance(node, ast.Call):
        raise ValueError("function calls are not allowed; only numbers and operators are")
    raise ValueError(f"unsupported syntax: {type(node).__name__}")


def calculate(expression: str) -> float | int:
    """Evaluate an arithmetic expression and return the number it equals.

    Supports + - * / // % ** with parentheses, unary minus and both integer
    and decimal numbers. Names, function calls and every other kind of
    Python syntax are rejected. Exponents larger than 100 are refused.
    Integral results are returned as int; other results are rounded to
    10 decimal places to hide floating-point noise.

    Args:
        expression: The arithmetic expression to evaluate, written with
            Python operators, for example "(12 + 3) * 4" or "2 ** 10".

    Returns:
        The value of the expression, as an int when it is a whole number.

    Raises:
        ValueError: If the expression is empty, malformed, uses anything other
            than numbers and the supported operators, divides by zero, or is
            too large to compute.
    """
    if not isinstance(expression, str):
        raise ValueError("expression must be a string")
    text = expression.strip()
    if not text:
        raise ValueError("expression is empty")
    if len(text) > _MAX_EXPRESSION_CHARS:
        raise ValueError(
            f"expression is too long (at most {_MAX_EXPRESSION_CHARS} characters)"
        )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ValueError(f"could not parse expression {expression!r}") from None
    result = _evaluate(tree)
    if isinstance(result, float):
        if result.is_integer():
            return int(result)
        return round(result, 10)
    return result


# ---------------------------------------------------------------------------
# convert_units
# ---------------------------------------------------------------------------

# unit -> (kind, factor to the kind's base unit); temperature is handled apart.
_LINEAR_UNITS: dict[str, tuple[str, float]] = {
    # length, base metre
    "m": ("length", 1.0),
    "km": ("length", 1000.0),
    "cm": ("length", 0.01),
    "mm": ("length", 0.001),
    "mi": ("length", 1609.344),
    "ft": ("length", 0.3048),
    "in": ("length", 0.0254),
    # mass, base kilogram
    "kg": ("mass", 1.0),
    "g": ("mass", 0.001),
    "lb": ("mass", 0.45359237),
    "oz": ("mass", 0.028349523125),
    # volume, base litre (gal is the US liquid gallon)
    "l": ("volume", 1.0),
    "ml": ("volume", 0.001),
    "gal": ("volume", 3.785411784),
}

_TEMPERATURE_UNITS = ("C", "F", "K")

_UNIT_LOOKUP: dict[str, str] = {
    name.lower(): name for name in (*_LINEAR_UNITS, *_TEMPERATURE_UNITS)
}


def _canonical_unit(unit: str) -> str:
    if not isinstance(unit, str):
        raise ValueError(f"unknown unit {unit!r}")
    name = _UNIT_LOOKUP.get(unit.strip().lower())
    if name is None:
        known = ", ".join(_UNIT_LOOKUP.values())
        raise ValueError(f"unknown unit {unit!r}; supported units are {known}")
    return name


def _unit_kind(unit: str) -> str:
    return "temperature" if unit in _TEMPERATURE_UNITS else _LINEAR_UNITS[unit][0]


def _to_celsius(value: float, unit: str) -> float:
    if unit == "C":
        return value
    if unit == "F":
        return (value - 32.0) * 5.0 / 9.0
    return value - 273.15


def _from_celsius(value: float, unit: str) -> float:
    if unit == "C":
        return value
    if unit == "F":
        return value * 9.0 / 5.0 + 32.0
    return value + 273.15


def _round_result(value: float) -> float:
    """Round to 4 decimals, keeping 4 significant digits for tiny values."""
    if value == 0 or abs(value) >= 0.001:
        result = round(value, 4)
    else:
        digits = 3 - math.floor(math.log10(abs(value)))
        result = round(value, digits)
    return result + 0.0  # turns -0.0 into 0.0


def convert_units(value: float, from_unit: str, to_unit: str) -> float:
    """Convert a quantity from one unit to another unit of the same kind.

    Supported units (case-insensitive): length m, km, cm, mm, mi, ft, in;
    mass kg, g, lb, oz; temperature C, F, K; volume l, ml, gal (US gallon).
    The result is rounded to 4 decimal places.

    Args:
        value: The number to convert, expressed in from_unit.
        from_unit: The unit the value is given in, for example "km" or "F".
        to_unit: The unit to convert to; it must measure the same kind of
            quantity as from_unit, for example "mi" or "C".

    Returns:
        The converted value, expressed in to_unit.

    Raises:
        ValueError: If a unit is unknown or the two units measure different
            kinds of quantity (for example kg and km).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"value must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError("value must be a finite number")
    source = _canonical_unit(from_unit)
    target = _canonical_unit(to_unit)
    source_kind = _unit_kind(source)
    target_kind = _unit_kind(target)
    if source_kind != target_kind:
        raise ValueError(
            f"cannot convert {source} ({source_kind}) to {target} ({target_kind})"
        )
    if source_kind == "temperature":
        result = _from_celsius(_to_celsius(float(value), source), target)
    else:
        result = float(value) * _LINEAR_UNITS[source][1] / _LINEAR_UNITS[target][1]
    return _round_result(result)


# ---------------------------------------------------------------------------
# get_weather
# ---------------------------------------------------------------------------

# A fixed, made-up snapshot: the tool never goes to the network.
# city -> (condition, temperature in C, humidity %, wind km/h)
_WEATHER: dict[str, tuple[str, int, int, int]] = {
    "Paris": ("light rain", 14, 82, 11),
    "London": ("overcast", 12, 76, 18),
    "Tokyo": ("clear", 21, 58, 9),
    "New York": ("partly cloudy", 17, 63, 15),
    "Sydney": ("sunny", 24, 55, 20),
    "Beijing": ("sunny", 8, 31, 14),
    "Hangzhou": ("drizzle", 19, 88, 7),
    "Cairo": ("clear", 31, 22, 12),
    "Reykjavik": ("snow showers", -2, 79, 33),
    "Mumbai": ("humid and hazy", 33, 74, 10),
    "Toronto": ("cloudy", 6, 68, 22),
    "Nairobi": ("partly cloudy", 23, 49, 13),
    "Berlin": ("foggy", 9, 91, 6),
    "Mexico City": ("thunderstorms", 18, 81, 16),
    "Singapore": ("heavy rain", 28, 93, 8),
    "Lisbon": ("sunny", 20, 60, 19),
}

_CITY_ALIASES: dict[str, str] = {
    "nyc": "New York",
    "new york city": "New York",
    "北京": "Beijing",
    "杭州": "Hangzhou",
    "东京": "Tokyo",
    "巴黎": "Paris",
    "伦敦": "London",
}

_EXAMPLE_CITIES = ("Paris", "London", "Tokyo", "New York", "Beijing", "Hangzhou")

_CITY_LOOKUP: dict[str, str] = {name.lower(): name for name in _WEATHER}
_CITY_LOOKUP.update(_CITY_ALIASES)


def get_weather(city: str, unit: str = "C") -> dict:
    """Look up the current weather for a city.

    Reads from a small built-in table of cities, so the answer is always the
    same for a given city. City names are case-insensitive.

    Args:
        city: The name of the city, for example "Paris" or "Hangzhou".
        unit: The temperature unit of the answer: "C" for Celsius (the
            default) or "F" for Fahrenheit.

    Returns:
        A dict with the keys city, condition, temperature, unit, humidity
        (percent) and wind_kph (km/h).

    Raises:
        ValueError: If the city is not in the table or the unit is not C or F.
    """
    if not isinstance(city, str) or not city.strip():
        raise ValueError("city must be a non-empty string")
    if not isinstance(unit, str) or unit.strip().upper() not in ("C", "F"):
        raise ValueError(f"unknown unit {unit!r}; use 'C' or 'F'")
    unit_name = unit.strip().upper()
    key = city.strip().lower()
    name = _CITY_LOOKUP.get(key) or _CITY_LOOKUP.get(city.strip())
    if name is None:
        examples = ", ".join(_EXAMPLE_CITIES)
        raise ValueError(f"unknown city {city!r}. Known cities include {examples}.")
    condition, temp_c, humidity, wind_kph = _WEATHER[name]
    temperature = temp_c if unit_name == "C" else round(temp_c * 9 / 5 + 32)
    return {
        "city": name,
        "condition": condition,
        "temperature": temperature,
        "unit": unit_name,
        "humidity": humidity,
        "wind_kph": wind_kph,
    }


TOOLS = [calculate, convert_units, get_weather]

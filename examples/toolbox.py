"""Sixteen small, deterministic tools for the function-calling data (calls_*.jsonl).

Each tool is a real function that the generator (``make_calls.py``) calls to
produce the tool results in the data. They use only the standard library,
read fixed built-in tables instead of the network or the clock, and change
nothing outside themselves: "send", "book" and "order" only check their input
and return the receipt a real service would give. Bad input raises
ValueError with a message that says what to fix.

The tools differ in the shape of their arguments on purpose: required and
optional arguments, enums (``Literal``), integers, numbers, booleans,
strings, lists of strings or integers, and two tools whose arguments are a
list of objects (``place_order``, ``split_bill``), one of them with an
optional nested object (``ship_to``).
"""

from __future__ import annotations

import datetime
import json
import math
import re
import zlib
from typing import Literal

__all__ = [
    "convert_currency", "convert_time", "days_between", "search_products", "place_order",
    "book_table", "send_message", "text_stats", "get_stock_quotes", "set_reminder",
    "score_summary", "shipping_cost", "translate_word", "create_event", "flight_status",
    "split_bill", "TOOLS",
]


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _integer(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _text(value: object, name: str, limit: int = 500) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    if len(value) > limit:
        raise ValueError(f"{name} is too long ({len(value)} characters; at most {limit})")
    return value.strip()


def _choice(value: object, name: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; use one of {', '.join(options)}")
    return value  # type: ignore[return-value]


def _date(value: object, name: str) -> datetime.date:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        raise ValueError(f"{name} must be a date written as YYYY-MM-DD, got {value!r}")
    try:
        return datetime.date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a real calendar date") from None


def _clock(value: object, name: str) -> int:
    """'HH:MM' (24-hour) -> minutes after midnight."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip()) if isinstance(value, str) else None
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"{name} must be a 24-hour time written as HH:MM, got {value!r}")
    return int(match.group(1)) * 60 + int(match.group(2))


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _code(prefix: str, *parts: object) -> str:
    """A stable reference number for a receipt: the same input gives the same code."""
    digest = zlib.crc32(json.dumps(parts, sort_keys=True, default=str).encode("utf-8"))
    return f"{prefix}-{digest % 1_000_000:06d}"


# ---------------------------------------------------------------------------
# convert_currency
# ---------------------------------------------------------------------------

Currency = Literal["USD", "EUR", "GBP", "JPY", "CNY", "CAD", "AUD", "CHF", "INR", "MXN"]

# Units of each currency that one US dollar buys: a fixed, made-up snapshot.
_PER_USD: dict[str, float] = {
    "USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 151.2, "CNY": 7.24,
    "CAD": 1.36, "AUD": 1.53, "CHF": 0.9, "INR": 83.4, "MXN": 16.9,
}


def convert_currency(amount: float, from_currency: Currency, to_currency: Currency) -> dict:
    """Convert an amount of money from one currency to another at fixed exchange rates.

    The rates come from a built-in table (a fixed snapshot, not live rates).
    The converted amount is rounded to 2 decimal places.

    Args:
        amount: The amount of money to convert, in from_currency; not negative.
        from_currency: The ISO 4217 code of the currency the amount is in, for example "EUR".
        to_currency: The ISO 4217 code of the currency to convert to, for example "JPY".
    """
    value = _number(amount, "amount")
    if value < 0:
        raise ValueError("amount must not be negative")
    source = _choice(from_currency, "currency", tuple(_PER_USD))
    target = _choice(to_currency, "currency", tuple(_PER_USD))
    rate = _PER_USD[target] / _PER_USD[source]
    return {
        "amount": amount,
        "from_currency": source,
        "to_currency": target,
        "rate": round(rate, 6),
        "converted": round(value * rate, 2),
    }


# ---------------------------------------------------------------------------
# convert_time
# ---------------------------------------------------------------------------

Zone = Literal[
    "UTC", "London", "Paris", "Cairo", "Moscow", "Dubai", "Mumbai", "Bangkok", "Singapore",
    "Tokyo", "Sydney", "Auckland", "Sao Paulo", "New York", "Chicago", "Denver",
    "Los Angeles", "Honolulu",
]

# Standard-time offsets from UTC in minutes; daylight saving time is ignored.
_ZONE_OFFSETS: dict[str, int] = {
    "UTC": 0, "London": 0, "Paris": 60, "Cairo": 120, "Moscow": 180, "Dubai": 240,
    "Mumbai": 330, "Bangkok": 420, "Singapore": 480, "Tokyo": 540, "Sydney": 600,
    "Auckland": 720, "Sao Paulo": -180, "New York": -300, "Chicago": -360, "Denver": -420,
    "Los Angeles": -480, "Honolulu": -600,
}


def convert_time(time: str, from_zone: Zone, to_zone: Zone) -> dict:
    """Convert a clock time from one time zone to another.

    Uses each zone's fixed standard-time offset from UTC (daylight saving time
    is ignored). day_shift in the answer is -1 when the converted time falls
    on the previous day, 1 on the next day and 0 on the same day.

    Args:
        time: The clock time in from_zone, 24-hour, written as HH:MM, for example "14:30".
        from_zone: The time zone the time is given in, named by UTC or a city.
        to_zone: The time zone to convert the time to, named by UTC or a city.
    """
    minutes = _clock(time, "time")
    source = _choice(from_zone, "time zone", tuple(_ZONE_OFFSETS))
    target = _choice(to_zone, "time zone", tuple(_ZONE_OFFSETS))
    shifted = minutes - _ZONE_OFFSETS[source] + _ZONE_OFFSETS[target]
    return {
        "from_time": _hhmm(minutes),
        "from_zone": source,
        "time": _hhmm(shifted % 1440),
        "zone": target,
        "day_shift": shifted // 1440,
    }


# ---------------------------------------------------------------------------
# days_between
# ---------------------------------------------------------------------------


def days_between(start_date: str, end_date: str, include_end_date: bool = False) -> dict:
    """Count the days from one calendar date to another.

    The count is negative when end_date comes before start_date.

    Args:
        start_date: The first date, written as YYYY-MM-DD.
        end_date: The second date, written as YYYY-MM-DD.
        include_end_date: Whether to count the end date itself as well (for
            example to count the days of a stay or a holiday, both ends included).
    """
    start = _date(start_date, "start_date")
    end = _date(end_date, "end_date")
    if not isinstance(include_end_date, bool):
        raise ValueError("include_end_date must be true or false")
    days = (end - start).days
    if include_end_date:
        days += 1 if days >= 0 else -1
    return {
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "days": days,
        "weeks": round(days / 7, 2),
    }


# ---------------------------------------------------------------------------
# search_products and place_order share one small catalogue
# ---------------------------------------------------------------------------

Category = Literal["any", "electronics", "home", "kitchen", "outdoor", "books", "toys"]

# sku -> (name, category, price in USD, in stock)
_CATALOGUE: dict[str, tuple[str, str, float, bool]] = {
    "EL-101": ("Wireless Headphones", "electronics", 59.99, True),
    "EL-102": ("Noise Cancelling Headphones", "electronics", 149.0, False),
    "EL-103": ("Wired Earbuds", "electronics", 14.5, True),
    "EL-104": ("USB-C Charging Cable", "electronics", 9.99, True),
    "EL-105": ("Portable Power Bank", "electronics", 34.0, True),
    "EL-106": ("Bluetooth Speaker", "electronics", 45.0, False),
    "EL-107": ("Mechanical Keyboard", "electronics", 89.0, True),
    "EL-108": ("Wireless Mouse", "electronics", 24.99, True),
    "HM-201": ("Desk Lamp", "home", 27.5, True),
    "HM-202": ("Floor Lamp", "home", 64.0, False),
    "HM-203": ("Office Chair", "home", 179.0, True),
    "HM-204": ("Folding Chair", "home", 32.0, True),
    "HM-205": ("Wool Blanket", "home", 48.0, True),
    "HM-206": ("Scented Candle", "home", 12.0, False),
    "KT-301": ("Electric Kettle", "kitchen", 39.99, True),
    "KT-302": ("Stovetop Kettle", "kitchen", 29.0, False),
    "KT-303": ("Ceramic Coffee Mug", "kitchen", 8.5, True),
    "KT-304": ("Travel Coffee Mug", "kitchen", 19.0, True),
    "KT-305": ("Chef Knife", "kitchen", 54.0, True),
    "KT-306": ("Coffee Grinder", "kitchen", 42.0, False),
    "OD-401": ("Two-Person Tent", "outdoor", 129.0, True),
    "OD-402": ("Family Tent", "outdoor", 259.0, False),
    "OD-403": ("Hiking Backpack", "outdoor", 79.0, True),
    "OD-404": ("Insulated Water Bottle", "outdoor", 22.0, True),
    "OD-405": ("Camping Chair", "outdoor", 36.0, False),
    "OD-406": ("Sleeping Bag", "outdoor", 68.0, True),
    "BK-501": ("Mystery Novel", "books", 13.99, True),
    "BK-502": ("Science Fiction Novel", "books", 15.5, True),
    "BK-503": ("Vegetarian Cookbook", "books", 24.0, False),
    "BK-504": ("Travel Guide to Japan", "books", 21.0, True),
    "BK-505": ("Python Programming Book", "books", 39.0, True),
    "TY-601": ("Wooden Puzzle", "toys", 16.0, True),
    "TY-602": ("Jigsaw Puzzle 1000 Pieces", "toys", 19.5, False),
    "TY-603": ("Building Blocks Set", "toys", 44.0, True),
    "TY-604": ("Remote Control Car", "toys", 58.0, True),
    "TY-605": ("Plush Bear", "toys", 17.0, True),
}


def _words(text: str) -> list[str]:
    """Lowercase words, with a plural 's' dropped so 'lamps' finds 'Lamp'."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]


def search_products(
    query: str,
    category: Category = "any",
    max_price: float | None = None,
    in_stock_only: bool = False,
    limit: int = 5,
) -> list[dict]:
    """Search the shop's product catalogue and return matching products, cheapest first.

    A product matches when every word of the query appears in its name.

    Args:
        query: Words to look for in product names, for example "headphones" or "coffee mug".
        category: Only search this category; "any" searches them all.
        max_price: Only return products that cost at most this much, in US dollars.
        in_stock_only: Whether to leave out products that are out of stock.
        limit: The largest number of products to return, from 1 to 20.
    """
    wanted = _words(_text(query, "query", 100))
    if not wanted:
        raise ValueError("query must contain at least one word")
    category = _choice(category, "category", ("any", "electronics", "home", "kitchen",
                                              "outdoor", "books", "toys"))
    ceiling = None if max_price is None else _number(max_price, "max_price")
    if not isinstance(in_stock_only, bool):
        raise ValueError("in_stock_only must be true or false")
    count = _integer(limit, "limit", 1, 20)
    found = []
    for sku, (name, cat, price, stock) in _CATALOGUE.items():
        if not set(wanted) <= set(_words(name)):
            continue
        if category != "any" and cat != category:
            continue
        if ceiling is not None and price > ceiling:
            continue
        if in_stock_only and not stock:
            continue
        found.append({"sku": sku, "name": name, "category": cat, "price": price,
                      "in_stock": stock})
    found.sort(key=lambda item: item["price"])
    return found[:count]


Country = Literal["US", "CA", "GB", "DE", "FR", "NL", "ES", "IT", "JP", "AU"]
_COUNTRIES = ("US", "CA", "GB", "DE", "FR", "NL", "ES", "IT", "JP", "AU")


def _address(ship_to: object) -> str:
    if not isinstance(ship_to, dict):
        raise ValueError("ship_to must be an object with name, street, city and country")
    allowed = ("name", "street", "city", "postal_code", "country")
    unknown = [k for k in ship_to if k not in allowed]
    if unknown:
        raise ValueError(f"ship_to has unknown field(s) {', '.join(unknown)}; "
                         f"use {', '.join(allowed)}")
    missing = [k for k in ("name", "street", "city", "country") if k not in ship_to]
    if missing:
        raise ValueError(f"ship_to is missing {', '.join(missing)}")
    parts = [_text(ship_to[k], f"ship_to.{k}", 100) for k in ("name", "street", "city")]
    if "postal_code" in ship_to:
        parts.append(_text(ship_to["postal_code"], "ship_to.postal_code", 20))
    parts.append(_choice(ship_to["country"], "country", _COUNTRIES))
    return ", ".join(parts)


def place_order(items: list[dict], ship_to: dict | None = None) -> dict:
    """Place an order for products from the shop's catalogue and return the receipt.

    Shipping is free from $50; below that it costs $5.99 within the US and
    $15.99 abroad. Without ship_to the order goes to the address on file (in
    the US).

    Args:
        items: The products to order, each an object with "sku" (the product's
            code, for example "KT-303") and "quantity" (a whole number from 1 to 20).
        ship_to: Where to send the order, if not to the address on file: an
            object with "name", "street", "city", "country" (a two-letter
            code) and optionally "postal_code".
    """
    if not isinstance(items, list) or not items:
        raise ValueError("items must be a non-empty list of {sku, quantity} objects")
    lines, seen = [], set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"sku", "quantity"}:
            raise ValueError(f"items[{i}] must be an object with exactly sku and quantity")
        sku = item["sku"].strip().upper() if isinstance(item["sku"], str) else item["sku"]
        if sku not in _CATALOGUE:
            raise ValueError(f"unknown sku {item['sku']!r}; search_products lists the codes")
        if sku in seen:
            raise ValueError(f"sku {sku} is listed twice; give one line with the total quantity")
        seen.add(sku)
        quantity = _integer(item["quantity"], f"items[{i}].quantity", 1, 20)
        name, _, price, stock = _CATALOGUE[sku]
        if not stock:
            raise ValueError(f"{name} ({sku}) is out of stock")
        lines.append({"sku": sku, "name": name, "quantity": quantity,
                      "line_total": round(price * quantity, 2)})
    destination = "address on file" if ship_to is None else _address(ship_to)
    abroad = ship_to is not None and ship_to["country"] != "US"
    subtotal = round(sum(line["line_total"] for line in lines), 2)
    shipping = 0.0 if subtotal >= 50 else (15.99 if abroad else 5.99)
    return {
        "order_id": _code("ORD", items, ship_to),
        "lines": lines,
        "subtotal": subtotal,
        "shipping": shipping,
        "total": round(subtotal + shipping, 2),
        "ship_to": destination,
    }


# ---------------------------------------------------------------------------
# book_table
# ---------------------------------------------------------------------------

# name -> (cuisine, first seating, last seating, largest party)
_RESTAURANTS: dict[str, tuple[str, str, str, int]] = {
    "Luna Trattoria": ("Italian", "12:00", "22:00", 10),
    "Sakura House": ("Japanese", "11:30", "21:30", 8),
    "The Olive Branch": ("Mediterranean", "12:00", "21:00", 12),
    "Casa Mar": ("Spanish", "13:00", "23:00", 14),
    "Bistro Lumiere": ("French", "18:00", "22:30", 6),
    "Golden Dragon": ("Chinese", "11:00", "22:00", 20),
    "Harbor Grill": ("Seafood", "17:00", "22:00", 8),
    "Green Fork": ("Vegetarian", "08:00", "20:00", 6),
    "Spice Route": ("Indian", "12:00", "23:00", 16),
    "Blue Door Cafe": ("Cafe", "07:30", "16:00", 4),
    "Taqueria Sol": ("Mexican", "11:00", "22:30", 10),
    "Nordic Table": ("Scandinavian", "17:30", "21:30", 6),
}


def book_table(restaurant: str, date: str, time: str, party_size: int, notes: str = "") -> dict:
    """Reserve a table at one of the partner restaurants.

    Checks that the restaurant exists, that the time is within its seating
    hours and that the party is not too large, then returns the confirmation.

    Args:
        restaurant: The restaurant's name, for example "Luna Trattoria".
        date: The day of the reservation, written as YYYY-MM-DD.
        time: The seating time, 24-hour, written as HH:MM.
        party_size: How many people the table is for.
        notes: Special requests for the restaurant, such as an allergy or a high chair.
    """
    lookup = {name.lower(): name for name in _RESTAURANTS}
    name = lookup.get(restaurant.strip().lower()) if isinstance(restaurant, str) else None
    if name is None:
        raise ValueError(f"unknown restaurant {restaurant!r}; partners are "
                         f"{', '.join(_RESTAURANTS)}")
    day = _date(date, "date")
    minutes = _clock(time, "time")
    cuisine, first, last, largest = _RESTAURANTS[name]
    if not _clock(first, "first") <= minutes <= _clock(last, "last"):
        raise ValueError(f"{name} seats guests between {first} and {last}")
    size = _integer(party_size, "party_size", 1, 50)
    if size > largest:
        raise ValueError(f"{name} takes parties of at most {largest}")
    receipt = {
        "confirmation": _code(name[:3].upper(), name, day.isoformat(), minutes, size, notes),
        "restaurant": name,
        "cuisine": cuisine,
        "date": day.isoformat(),
        "weekday": day.strftime("%A"),
        "time": _hhmm(minutes),
        "party_size": size,
    }
    if notes:
        receipt["notes"] = _text(notes, "notes", 300)
    return receipt


# ---------------------------------------------------------------------------
# send_message
# ---------------------------------------------------------------------------

_CONTACTS: dict[str, str] = {
    "Mom": "+1 555 0100", "Dad": "+1 555 0101", "Alex": "+1 555 0142",
    "Priya": "+44 7700 900123", "Jordan": "+1 555 0177", "Sam": "+1 555 0190",
    "Mei": "+86 138 0000 1234", "Lucas": "+33 6 12 34 56 78", "Fatima": "+971 50 123 4567",
    "Noah": "+1 555 0111", "Grandma": "+1 555 0155", "Olivia": "+61 412 345 678",
    "Team": "group of 6", "Landlord": "+1 555 0123", "Dr. Rivera": "+1 555 0166",
}


def send_message(to: str, body: str, urgent: bool = False) -> dict:
    """Send a short text message to a contact from the address book.

    This sandbox version checks the message and returns the delivery receipt;
    nothing actually leaves the machine.

    Args:
        to: The contact's name as saved in the address book, for example "Mom" or "Priya".
        body: The text of the message, at most 500 characters.
        urgent: Whether to mark the message as urgent, which makes the phone ring.
    """
    lookup = {name.lower(): name for name in _CONTACTS}
    name = lookup.get(to.strip().lower()) if isinstance(to, str) else None
    if name is None:
        raise ValueError(f"no contact named {to!r}; contacts are {', '.join(_CONTACTS)}")
    text = _text(body, "body", 500)
    if not isinstance(urgent, bool):
        raise ValueError("urgent must be true or false")
    return {
        "status": "sent",
        "message_id": _code("MSG", name, text, urgent),
        "to": name,
        "number": _CONTACTS[name],
        "characters": len(text),
        "urgent": urgent,
    }


# ---------------------------------------------------------------------------
# text_stats
# ---------------------------------------------------------------------------


def text_stats(text: str, top_words: int = 0) -> dict:
    """Count the words, characters, letters and sentences in a text.

    Words are separated by whitespace; characters include spaces and
    punctuation; letters are alphabetic characters only; a sentence ends with
    ".", "!" or "?" (a final sentence without one counts too). Word
    frequencies ignore case and punctuation.

    Args:
        text: The text to count in.
        top_words: How many of the most frequent words to list with their
            counts, from 0 (none) to 10.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    if len(text) > 20000:
        raise ValueError("text is too long (at most 20000 characters)")
    top = _integer(top_words, "top_words", 0, 10)
    stats: dict = {
        "words": len(text.split()),
        "characters": len(text),
        "letters": sum(ch.isalpha() for ch in text),
        "sentences": len([s for s in re.split(r"[.!?]+", text) if s.strip()]),
    }
    if top:
        counts: dict[str, int] = {}
        for word in re.findall(r"[a-z0-9']+", text.lower()):
            word = word.strip("'")
            if word:
                counts[word] = counts.get(word, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        stats["top_words"] = [[word, n] for word, n in ranked[:top]]
    return stats


# ---------------------------------------------------------------------------
# get_stock_quotes
# ---------------------------------------------------------------------------

# symbol -> (company, last price in USD, change since the previous close in %)
# A fixed sample table: these are not market data.
_QUOTES: dict[str, tuple[str, float, float]] = {
    "AAPL": ("Apple", 189.3, 0.8), "MSFT": ("Microsoft", 412.55, -0.4),
    "GOOGL": ("Alphabet", 152.1, 1.3), "AMZN": ("Amazon", 178.25, -1.1),
    "NVDA": ("Nvidia", 875.4, 2.6), "TSLA": ("Tesla", 171.05, -3.2),
    "META": ("Meta Platforms", 498.7, 0.5), "NFLX": ("Netflix", 610.2, 1.9),
    "IBM": ("IBM", 183.6, -0.2), "INTC": ("Intel", 42.15, -1.7),
    "KO": ("Coca-Cola", 60.4, 0.1), "DIS": ("Walt Disney", 112.8, 0.9),
    "NKE": ("Nike", 94.3, -0.6), "SBUX": ("Starbucks", 88.9, 0.3),
    "ORCL": ("Oracle", 125.4, 1.1), "PEP": ("PepsiCo", 168.2, -0.3),
}


def get_stock_quotes(symbols: list[str], currency: Literal["USD", "EUR", "GBP"] = "USD") -> list[dict]:
    """Look up the latest price of one or more stocks by ticker symbol.

    Prices come from a fixed sample table (not live market data); prices in
    EUR or GBP are converted at fixed rates and rounded to 2 decimals.

    Args:
        symbols: The ticker symbols to look up, for example ["AAPL", "MSFT"]; at most 10.
        currency: The currency to show the prices in.
    """
    if not isinstance(symbols, list) or not symbols:
        raise ValueError("symbols must be a non-empty list of ticker symbols")
    if len(symbols) > 10:
        raise ValueError("at most 10 symbols per request")
    currency = _choice(currency, "currency", ("USD", "EUR", "GBP"))
    quotes = []
    for symbol in symbols:
        key = symbol.strip().upper() if isinstance(symbol, str) else None
        if key not in _QUOTES:
            raise ValueError(f"unknown symbol {symbol!r}; known symbols are {', '.join(_QUOTES)}")
        company, price, change = _QUOTES[key]
        quotes.append({"symbol": key, "company": company,
                       "price": round(price * _PER_USD[currency], 2),
                       "currency": currency, "change_percent": change})
    return quotes


# ---------------------------------------------------------------------------
# set_reminder
# ---------------------------------------------------------------------------


def _duration(minutes: int) -> str:
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{n} {word}{'' if n == 1 else 's'}"
             for n, word in ((days, "day"), (hours, "hour"), (mins, "minute")) if n]
    return " ".join(parts)


def set_reminder(text: str, minutes_from_now: int,
                 repeat: Literal["none", "daily", "weekly"] = "none") -> dict:
    """Set a reminder that goes off a given number of minutes from now.

    Args:
        text: What to be reminded of, for example "call the dentist".
        minutes_from_now: In how many minutes the reminder goes off, from 1 to
            43200 (30 days); for example 90 for an hour and a half.
        repeat: Whether the reminder repeats after it first goes off.
    """
    what = _text(text, "text", 200)
    minutes = _integer(minutes_from_now, "minutes_from_now", 1, 43200)
    repeat = _choice(repeat, "repeat", ("none", "daily", "weekly"))
    return {
        "reminder_id": _code("REM", what, minutes, repeat),
        "text": what,
        "due_in": _duration(minutes),
        "repeat": repeat,
    }


# ---------------------------------------------------------------------------
# score_summary
# ---------------------------------------------------------------------------


def score_summary(scores: list[int], passing_score: int = 50) -> dict:
    """Summarize a list of test scores: average, median, lowest, highest and how many passed.

    Args:
        scores: The scores, whole numbers from 0 to 100; at least one.
        passing_score: The lowest score that counts as a pass.
    """
    if not isinstance(scores, list) or not scores:
        raise ValueError("scores must be a non-empty list of whole numbers")
    values = [_integer(s, "each score", 0, 100) for s in scores]
    bar = _integer(passing_score, "passing_score", 0, 100)
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    passed = sum(v >= bar for v in values)
    return {
        "count": len(values),
        "mean": round(sum(values) / len(values), 2),
        "median": median,
        "min": ordered[0],
        "max": ordered[-1],
        "passed": passed,
        "failed": len(values) - passed,
    }


# ---------------------------------------------------------------------------
# shipping_cost
# ---------------------------------------------------------------------------

Destination = Literal["US", "CA", "MX", "GB", "DE", "FR", "ES", "IT", "JP", "AU", "BR", "IN"]

# country -> (base price USD, price per started half kilogram, standard days)
_SHIPPING_ZONES: dict[str, tuple[float, float, int]] = {
    "US": (4.5, 0.9, 3), "CA": (9.0, 1.6, 6), "MX": (10.0, 1.8, 7),
    "GB": (14.0, 2.4, 7), "DE": (14.0, 2.4, 7), "FR": (14.0, 2.4, 7),
    "ES": (14.0, 2.6, 8), "IT": (14.0, 2.6, 8), "JP": (16.0, 3.1, 8),
    "AU": (18.0, 3.4, 10), "BR": (17.0, 3.2, 12), "IN": (15.0, 2.9, 11),
}


def shipping_cost(weight_kg: float, destination: Destination, express: bool = False) -> dict:
    """Quote the price and delivery time of sending a parcel from the US.

    The price is a base fee plus a fee for every started half kilogram;
    express costs 80% more and arrives in about half the time.

    Args:
        weight_kg: The parcel's weight in kilograms, more than 0 and at most 30.
        destination: The two-letter code of the country the parcel goes to.
        express: Whether to use express delivery instead of standard.
    """
    weight = _number(weight_kg, "weight_kg")
    if not 0 < weight <= 30:
        raise ValueError("weight_kg must be more than 0 and at most 30")
    country = _choice(destination, "destination", tuple(_SHIPPING_ZONES))
    if not isinstance(express, bool):
        raise ValueError("express must be true or false")
    base, per_half_kg, days = _SHIPPING_ZONES[country]
    cost = base + per_half_kg * math.ceil(weight * 2)
    if express:
        cost *= 1.8
        days = max(1, math.ceil(days / 2))
    return {
        "destination": country,
        "weight_kg": weight_kg,
        "service": "express" if express else "standard",
        "cost_usd": round(cost, 2),
        "delivery_days": days,
    }


# ---------------------------------------------------------------------------
# translate_word
# ---------------------------------------------------------------------------

# English word -> (Spanish, French, German, Italian, Portuguese)
_DICTIONARY: dict[str, tuple[str, str, str, str, str]] = {
    "hello": ("hola", "bonjour", "hallo", "ciao", "olá"),
    "goodbye": ("adiós", "au revoir", "auf Wiedersehen", "arrivederci", "adeus"),
    "thank you": ("gracias", "merci", "danke", "grazie", "obrigado"),
    "please": ("por favor", "s'il vous plaît", "bitte", "per favore", "por favor"),
    "water": ("agua", "eau", "Wasser", "acqua", "água"),
    "bread": ("pan", "pain", "Brot", "pane", "pão"),
    "cheese": ("queso", "fromage", "Käse", "formaggio", "queijo"),
    "apple": ("manzana", "pomme", "Apfel", "mela", "maçã"),
    "milk": ("leche", "lait", "Milch", "latte", "leite"),
    "coffee": ("café", "café", "Kaffee", "caffè", "café"),
    "house": ("casa", "maison", "Haus", "casa", "casa"),
    "dog": ("perro", "chien", "Hund", "cane", "cão"),
    "cat": ("gato", "chat", "Katze", "gatto", "gato"),
    "book": ("libro", "livre", "Buch", "libro", "livro"),
    "friend": ("amigo", "ami", "Freund", "amico", "amigo"),
    "beach": ("playa", "plage", "Strand", "spiaggia", "praia"),
    "morning": ("mañana", "matin", "Morgen", "mattina", "manhã"),
    "night": ("noche", "nuit", "Nacht", "notte", "noite"),
    "red": ("rojo", "rouge", "rot", "rosso", "vermelho"),
    "green": ("verde", "vert", "grün", "verde", "verde"),
    "sun": ("sol", "soleil", "Sonne", "sole", "sol"),
    "moon": ("luna", "lune", "Mond", "luna", "lua"),
    "school": ("escuela", "école", "Schule", "scuola", "escola"),
    "window": ("ventana", "fenêtre", "Fenster", "finestra", "janela"),
    "door": ("puerta", "porte", "Tür", "porta", "porta"),
    "key": ("llave", "clé", "Schlüssel", "chiave", "chave"),
    "library": ("biblioteca", "bibliothèque", "Bibliothek", "biblioteca", "biblioteca"),
    "train station": ("estación de tren", "gare", "Bahnhof", "stazione", "estação de trem"),
}

_LANGUAGES = ("es", "fr", "de", "it", "pt")


def translate_word(word: str, target_language: Literal["es", "fr", "de", "it", "pt"]) -> dict:
    """Translate a common English word or short phrase using a small built-in dictionary.

    Args:
        word: The English word or phrase, for example "cheese" or "thank you".
        target_language: The ISO 639-1 code of the language to translate into:
            "es" Spanish, "fr" French, "de" German, "it" Italian, "pt" Portuguese.
    """
    key = " ".join(word.lower().split()) if isinstance(word, str) else ""
    if key not in _DICTIONARY:
        raise ValueError(f"{word!r} is not in the dictionary; it knows {', '.join(_DICTIONARY)}")
    language = _choice(target_language, "language", _LANGUAGES)
    return {
        "word": key,
        "language": language,
        "translation": _DICTIONARY[key][_LANGUAGES.index(language)],
    }


# ---------------------------------------------------------------------------
# create_event
# ---------------------------------------------------------------------------


def create_event(title: str, date: str, start_time: str, duration_minutes: int = 60,
                 attendees: list[str] | None = None) -> dict:
    """Add an event to the user's calendar and invite people to it.

    The event must end on the day it starts.

    Args:
        title: A short title for the event, for example "Dentist" or "Team sync".
        date: The day of the event, written as YYYY-MM-DD.
        start_time: When the event starts, 24-hour, written as HH:MM.
        duration_minutes: How long the event lasts in minutes, from 5 to 720.
        attendees: The names or email addresses of the people to invite.
    """
    name = _text(title, "title", 100)
    day = _date(date, "date")
    start = _clock(start_time, "start_time")
    length = _integer(duration_minutes, "duration_minutes", 5, 720)
    if start + length > 1440:
        raise ValueError("the event would end after midnight; shorten it or start earlier")
    people = [] if attendees is None else attendees
    if not isinstance(people, list) or len(people) > 20:
        raise ValueError("attendees must be a list of at most 20 names")
    guests = [_text(p, "each attendee", 100) for p in people]
    return {
        "event_id": _code("EVT", name, day.isoformat(), start, length, guests),
        "title": name,
        "date": day.isoformat(),
        "weekday": day.strftime("%A"),
        "start": _hhmm(start),
        "end": _hhmm(start + length),
        "attendees": guests,
    }


# ---------------------------------------------------------------------------
# flight_status
# ---------------------------------------------------------------------------

# flight -> (airline, from, to, scheduled departure, scheduled arrival), local times
_FLIGHTS: dict[str, tuple[str, str, str, str, str]] = {
    "BA117": ("British Airways", "London (LHR)", "New York (JFK)", "08:25", "11:20"),
    "AA100": ("American Airlines", "New York (JFK)", "London (LHR)", "18:30", "06:35"),
    "AF1380": ("Air France", "Paris (CDG)", "Barcelona (BCN)", "07:10", "08:50"),
    "LH400": ("Lufthansa", "Frankfurt (FRA)", "New York (JFK)", "10:15", "12:55"),
    "UA901": ("United", "San Francisco (SFO)", "Frankfurt (FRA)", "15:40", "11:45"),
    "NH10": ("ANA", "Tokyo (NRT)", "New York (JFK)", "11:00", "10:40"),
    "QF1": ("Qantas", "Sydney (SYD)", "London (LHR)", "15:55", "05:20"),
    "EK202": ("Emirates", "Dubai (DXB)", "New York (JFK)", "02:30", "08:25"),
    "SQ322": ("Singapore Airlines", "Singapore (SIN)", "London (LHR)", "23:35", "06:10"),
    "AC856": ("Air Canada", "Toronto (YYZ)", "London (LHR)", "21:30", "09:25"),
    "KL1023": ("KLM", "Amsterdam (AMS)", "London (LHR)", "09:40", "10:00"),
    "IB3166": ("Iberia", "Madrid (MAD)", "Paris (ORY)", "12:05", "14:10"),
    "CA981": ("Air China", "Beijing (PEK)", "New York (JFK)", "13:00", "14:15"),
    "TK1821": ("Turkish Airlines", "Istanbul (IST)", "Paris (CDG)", "08:50", "11:35"),
    "LX318": ("Swiss", "Zurich (ZRH)", "London (LHR)", "07:00", "07:45"),
    "DL44": ("Delta", "Atlanta (ATL)", "Paris (CDG)", "17:35", "07:45"),
}


def flight_status(flight_number: str, date: str) -> dict:
    """Look up whether a scheduled flight is on time, delayed or cancelled on a given day.

    Reads a fixed timetable of airline flights; times are local to each airport.

    Args:
        flight_number: The airline code and number, for example "BA117".
        date: The day of the departure, written as YYYY-MM-DD.
    """
    key = re.sub(r"\s+", "", flight_number).upper() if isinstance(flight_number, str) else ""
    if key not in _FLIGHTS:
        raise ValueError(f"unknown flight {flight_number!r}; the timetable has "
                         f"{', '.join(_FLIGHTS)}")
    day = _date(date, "date")
    airline, origin, destination, departs, arrives = _FLIGHTS[key]
    roll = zlib.crc32(f"{key}|{day.isoformat()}".encode("ascii"))
    delay = 0
    if roll % 20 == 19:
        status = "cancelled"
    elif roll % 20 >= 14:
        status, delay = "delayed", 15 + 5 * ((roll // 20) % 22)
    else:
        status = "on time"
    expected = None
    if status != "cancelled":
        minutes = _clock(departs, "departure") + delay
        expected = _hhmm(minutes % 1440) + (" (next day)" if minutes >= 1440 else "")
    return {
        "flight_number": key,
        "airline": airline,
        "date": day.isoformat(),
        "from": origin,
        "to": destination,
        "scheduled_departure": departs,
        "scheduled_arrival": arrives,
        "status": status,
        "delay_minutes": delay,
        "expected_departure": expected,
    }


# ---------------------------------------------------------------------------
# split_bill
# ---------------------------------------------------------------------------


def split_bill(items: list[dict], people: int, tip_percent: float = 0) -> dict:
    """Add up a bill, add a tip and split the total evenly between people.

    Amounts are rounded to cents.

    Args:
        items: The lines of the bill, each an object with "description" (what
            it was, for example "pizza") and "amount" (its price).
        people: How many people share the bill, from 1 to 50.
        tip_percent: The tip as a percentage of the bill, for example 15 for 15%.
    """
    if not isinstance(items, list) or not items:
        raise ValueError("items must be a non-empty list of {description, amount} objects")
    subtotal = 0.0
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"description", "amount"}:
            raise ValueError(f"items[{i}] must be an object with exactly description and amount")
        _text(item["description"], f"items[{i}].description", 100)
        amount = _number(item["amount"], f"items[{i}].amount")
        if amount < 0:
            raise ValueError(f"items[{i}].amount must not be negative")
        subtotal += amount
    count = _integer(people, "people", 1, 50)
    tip_rate = _number(tip_percent, "tip_percent")
    if not 0 <= tip_rate <= 100:
        raise ValueError("tip_percent must be between 0 and 100")
    tip = subtotal * tip_rate / 100
    total = subtotal + tip
    return {
        "subtotal": round(subtotal, 2),
        "tip": round(tip, 2),
        "total": round(total, 2),
        "people": count,
        "per_person": round(total / count, 2),
    }


TOOLS = [
    convert_currency, convert_time, days_between, search_products, place_order, book_table,
    send_message, text_stats, get_stock_quotes, set_reminder, score_summary, shipping_cost,
    translate_word, create_event, flight_status, split_bill,
]

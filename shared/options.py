"""Parsers for request options. Values arrive as JSON values (any type) or as form/query strings;
each parser accepts exactly what its option means and raises ``InvalidOption`` (400) otherwise,
whatever it is given: huge integers, NaN, infinities, arrays, objects or very long strings."""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

from shared.errors import InvalidOption

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# Longest text accepted for a number (digits, sign, exponent): far more than any real value needs,
# and int() of a longer string is where the cost of parsing grows.
_MAX_NUMBER_TEXT = 64


def opt_bool(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    """A boolean option: JSON true/false or the strings 1/0, true/false, yes/no, on/off."""
    if name not in raw or raw[name] is None:
        return default
    value = raw[name]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidOption(f"option {name!r} must be a boolean (true/false), got {_show(value)}")


def opt_float(raw: Mapping[str, Any], name: str, default: float,
              lo: float = -math.inf, hi: float = math.inf) -> float:
    """A finite number option within [lo, hi]."""
    if name not in raw or raw[name] is None:
        return default
    value = raw[name]
    if isinstance(value, bool) or (isinstance(value, str) and len(value) > _MAX_NUMBER_TEXT):
        raise InvalidOption(f"option {name!r} must be a number, got {_show(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidOption(f"option {name!r} must be a number, got {_show(value)}") from None
    except OverflowError:  # a JSON integer too large for a float
        number = math.inf
    if not math.isfinite(number) or not lo <= number <= hi:
        raise InvalidOption(f"option {name!r} must be between {lo:g} and {hi:g}, got {_show(value)}")
    return number


def opt_int(raw: Mapping[str, Any], name: str, default: Optional[int],
            lo: int = -(2 ** 31), hi: int = 2 ** 31 - 1) -> Optional[int]:
    """An integer option within [lo, hi]."""
    if name not in raw or raw[name] is None:
        return default
    value = raw[name]
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise InvalidOption(f"option {name!r} must be an integer, got {_show(value)}")
    if isinstance(value, str) and len(value) > _MAX_NUMBER_TEXT:
        raise InvalidOption(f"option {name!r} must be between {lo} and {hi}, got {_show(value)}")
    try:
        number = int(value) if not isinstance(value, str) else int(value.strip(), 10)
    except (TypeError, ValueError, OverflowError):
        raise InvalidOption(f"option {name!r} must be an integer, got {_show(value)}") from None
    if not lo <= number <= hi:
        raise InvalidOption(f"option {name!r} must be between {lo} and {hi}, got {_show(value)}")
    return number


def opt_choice(raw: Mapping[str, Any], name: str, default: str, choices: Sequence[str]) -> str:
    """A string option from a fixed set (case-insensitive)."""
    if name not in raw or raw[name] is None:
        return default
    value = raw[name]
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise InvalidOption(f"option {name!r} must be one of {', '.join(choices)}, got {_show(value)}")
    return value.strip().lower()


def opt_str(raw: Mapping[str, Any], name: str, default: Optional[str],
            max_len: int = 10000) -> Optional[str]:
    """A free string option of bounded length."""
    if name not in raw or raw[name] is None:
        return default
    value = raw[name]
    if not isinstance(value, str):
        raise InvalidOption(f"option {name!r} must be a string, got {_show(value)}")
    if len(value) > max_len:
        raise InvalidOption(f"option {name!r} is longer than {max_len} characters")
    return value


def _show(value: Any) -> str:
    """A short, safe rendering of a client's value for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, str) and len(value) > 40:
        return repr(value[:37] + "...")
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

"""The settings a remote surface (the page, OSC) may set, and the values each takes.

One check for every surface, so that `/cadenza/temperature 0` over OSC and `{"temperature": 0}`
to the page's API are refused alike. `checked_change(name, value)` gives the Controls setter and
the value to hand it, or raises BadControl with one line saying which and why.
"""

from __future__ import annotations

import math

from models.controls import parse_key
from models.sampling import DENSITY_RANGE, TEMPERATURE_RANGE

SETTINGS = ("temperature", "density", "key", "dynamics", "instrument", "tempo_scale")


class BadControl(ValueError):
    """A value a surface sent that cannot be applied; its text says which and why."""


def _number(name: str, value, low: float, high: float, free_allowed: bool = False) -> float | None:
    if free_allowed and (value is None or (value == 0 and not isinstance(value, bool))):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadControl(f"{name} must be a number" + (" (0 or null: free)" if free_allowed else ""))
    if not low <= value <= high:
        raise BadControl(f"{name} {value:g} is outside {low:g}-{high:g}")
    return float(value)


def _key(value) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    if not isinstance(value, str):
        raise BadControl("key must be a string such as 'D minor', 'none' or 'auto'")
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return str(parse_key(value))
    except ValueError as error:
        raise BadControl(f"key: {error}") from None


def _program(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 127:
        raise BadControl("instrument must be a General MIDI program number 0-127")
    return value


def checked_change(name: str, value) -> tuple[str, object]:
    """(Controls setter name, value) for one of SETTINGS; BadControl if the value is not one it takes."""
    if name == "temperature":
        return "set_temperature", _number(name, value, *TEMPERATURE_RANGE)
    if name == "density":
        return "set_density", _number(name, value, *DENSITY_RANGE, free_allowed=True)
    if name == "key":
        return "set_key", _key(value)
    if name == "dynamics":
        return "set_dynamics", _number(name, value, 1, 127, free_allowed=True)
    if name == "instrument":
        return "set_program", _program(value)
    if name == "tempo_scale":
        return "set_tempo_scale", _number(name, value, 0.25, 4.0)
    raise BadControl(f"unknown control {name!r}")

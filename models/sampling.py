"""How notes are drawn: temperatures, nucleus and the controls a player asks for.

`render`, `stream`, the notebook and the style evaluation all take a Sampling. Options a user
leaves out come from the model card's "sampling" (chosen on validation by the style sweep).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from models.config import FIELD_ORDER
from models.controls import control_vector, key_profile, parse_key, played_profile
from models.errors import CadenzaError

DENSITY_RANGE = (0.5, 40.0)  # notes per second a player may ask for
TEMPERATURE_RANGE = (0.05, 5.0)


@dataclass(frozen=True)
class Sampling:
    """temperature: all fields; <field>_temperature: one field (None: the overall one).
    top_p: nucleus (None: off). density: notes per second, "auto" (the data's typical value) or None.
    key: "D minor" etc., "auto" (follow the player) or None."""

    temperature: float = 1.0
    top_p: float | None = None
    step_temperature: float | None = None
    pitch_temperature: float | None = None
    duration_temperature: float | None = None
    velocity_temperature: float | None = None
    density: float | str | None = None
    key: str | None = None

    def head_temperature(self) -> dict:
        """{field: temperature} for the fields whose own temperature is set."""
        values = {name: getattr(self, f"{name}_temperature") for name in FIELD_ORDER}
        return {name: value for name, value in values.items() if value is not None}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_card(cls, card: dict, **overrides) -> "Sampling":
        """The card's chosen sampling, with every override that is not None on top; validated."""
        known = {f.name for f in fields(cls)}
        chosen = {k: v for k, v in (card.get("sampling") or {}).items() if k in known}
        sampling = replace(cls(**chosen), **{k: v for k, v in overrides.items() if v is not None})
        sampling.validate()
        return sampling

    def validate(self) -> None:
        for name in ("temperature", *(f"{f}_temperature" for f in FIELD_ORDER)):
            value = getattr(self, name)
            if value is not None and not (TEMPERATURE_RANGE[0] <= value <= TEMPERATURE_RANGE[1]):
                raise CadenzaError(f"{name.replace('_', '-')} {value} is outside {TEMPERATURE_RANGE[0]}-{TEMPERATURE_RANGE[1]}")
        if self.top_p is not None and not (0 < self.top_p <= 1):
            raise CadenzaError(f"top-p {self.top_p} is outside (0, 1]")
        if isinstance(self.density, (int, float)) and not (DENSITY_RANGE[0] <= self.density <= DENSITY_RANGE[1]):
            raise CadenzaError(f"density {self.density} notes/s is outside {DENSITY_RANGE[0]}-{DENSITY_RANGE[1]}")
        if self.key not in (None, "auto"):
            try:
                parse_key(self.key)
            except ValueError as error:
                raise CadenzaError(str(error)) from None


def parse_density(text: str | None):
    """'6' -> 6.0, 'auto' -> 'auto', 'none' -> None; a one-line error otherwise."""
    if text is None or text.lower() == "none":
        return None
    if text.lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise CadenzaError(f"--density takes notes per second, 'auto' or 'none', not {text!r}") from None
    if not math.isfinite(value) or not (DENSITY_RANGE[0] <= value <= DENSITY_RANGE[1]):
        raise CadenzaError(f"--density {text} is outside {DENSITY_RANGE[0]}-{DENSITY_RANGE[1]} notes/s")
    return value


def parse_key_option(text: str | None):
    """'D minor' stays, 'auto' stays, 'none' -> None; a one-line error for an unreadable key."""
    if text is None or text.lower() == "none":
        return None
    if text.lower() == "auto":
        return "auto"
    try:
        return str(parse_key(text))
    except ValueError as error:
        raise CadenzaError(str(error)) from None


def scale_profiles(card: dict) -> dict:
    """Tonic-C profiles for major and minor: measured on the training data where the card has them."""
    profiles = (card.get("controls") or {}).get("key_profiles")
    if profiles:
        return profiles
    from models.controls import MAJOR_SCALE, MINOR_SCALE

    flat = {}
    for mode, scale in (("major", MAJOR_SCALE), ("minor", MINOR_SCALE)):
        profile = np.zeros(12)
        profile[list(scale)] = 1 / 7
        flat[mode] = profile.tolist()
    return flat


def controls_for(sampling: Sampling, card: dict, played_pitches=None) -> np.ndarray:
    """The control vector for a Sampling: 'auto' density is the card's typical density, 'auto' key
    the profile of `played_pitches` (no key while nothing was played)."""
    density = sampling.density
    if density == "auto":
        density = (card.get("controls") or {}).get("typical_density", 8.0)
    profile = None
    if sampling.key == "auto":
        profile = played_profile(played_pitches if played_pitches is not None else [])
    elif sampling.key is not None:
        profile = key_profile(parse_key(sampling.key), scale_profiles(card))
    return control_vector(profile, density, None)

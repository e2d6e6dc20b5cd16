"""How notes are drawn: temperatures, nucleus and the controls a player asks for.

`render`, `stream`, the notebook and the style evaluation all take a Sampling. Options a user
leaves out come from the model card's "sampling" (chosen on validation by the style sweep).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from models.config import FIELD_ORDER
from models.controls import all_keys, control_vector, key_profile, parse_key, played_profile
from models.errors import CadenzaError

DENSITY_RANGE = (0.5, 40.0)  # notes per second a player may ask for
DENSITY_WORDS = (None, "auto", "random", "hold")
ANSWERS = ("follow", "free")
CALL_PAUSE_SECONDS = 2.0  # a longer step in a call is a pause between phrases, not its pace
TEMPERATURE_RANGE = (0.05, 5.0)
LINE_TILT_MAX = 2.0  # past 1 the tables over-correct: for trying, not for playing
SPAN_HOLD_MAX = 48.0  # semitones; beyond it the hold does nothing a listener would hear


@dataclass(frozen=True)
class Sampling:
    """temperature: all fields; <field>_temperature: one field (None: the overall one).
    top_p: nucleus (None: off), applied to the fields in top_p_fields. density: notes per second, "auto" (the data's typical value),
    "random" (each stream draws one from the data's spread of pieces, and keeps it), "hold" (free,
    then held near the stream's own opening density: see DensityHold) or None (free).
    key: "D minor" etc., "auto" (follow the player), "random" (each stream draws one of the 24
    keys when it starts, and stays in it) or None. dynamics: the mean velocity asked for, or None.
    answer: how an answer to a call (a primer, what a player played) is steered: "follow" takes the
    key, density, dynamics and register the player left free from the call (see follow_call),
    "free" plays as without a call."""

    temperature: float = 1.0
    top_p: float | None = None
    top_p_fields: tuple = FIELD_ORDER  # the fields the nucleus cuts (e.g. ("pitch",): the key, not the lengths)
    step_temperature: float | None = None
    pitch_temperature: float | None = None
    duration_temperature: float | None = None
    velocity_temperature: float | None = None
    density: float | str | None = None
    key: str | None = None
    dynamics: float | None = None  # mean velocity 1-127 of the notes ahead (None: free)
    # A key asked for by name keeps to its scale; a key drawn by 'random' is played as real pieces
    # in that key are, with their share of notes from outside the scale.
    key_strict: bool = True
    answer: str = "follow"
    # (lowest, highest) MIDI pitch the notes ahead keep to, softly (see register_weights); None: free.
    register: tuple | None = None
    # The share of its probability a chord keeps that starts on the last chord's top note (1: as
    # the network has it). Below 1 the top line strikes its last note again less often.
    top_repeat: float = 1.0
    # The same for a note that would strike the last chord's lowest note again as its own chord's
    # lowest (models/bass.py). Below 1 the bass line strikes its last note again less often.
    bass_repeat: float = 1.0
    # How far the top and bass lines' intervals are drawn toward the data's (models/lines.py):
    # 0 as the network has them, 1 the full correction of the card's tables.
    line_tilt: float = 0.0
    # The share of its probability a note keeps that joins the chord being played (1: as the
    # network has it). Below 1 fewer notes are struck together (the network strikes too many).
    chord_join: float = 1.0
    # Semitones: a pitch d beyond the span of the stream's last 200 notes keeps e^(-d / span_hold)
    # of its probability (models/span.py); 0: off.
    span_hold: float = 0.0
    # The chance that a note able to carry on a figure its top line played before is offered that
    # pitch (models/echo.py); 0: never.
    echo: float = 0.0

    def head_temperature(self) -> dict:
        """{field: temperature} for the fields whose own temperature is set."""
        values = {name: getattr(self, f"{name}_temperature") for name in FIELD_ORDER}
        return {name: value for name, value in values.items() if value is not None}

    def draw_options(self) -> dict:
        """The keyword arguments of Runtime.sample this sampling sets, beside its temperature and a
        register's pitch weights (which the steering computes): `runtime.sample(sampling.temperature,
        pitch_weights=..., **sampling.draw_options())`."""
        return {"top_p": self.top_p, "head_temperature": self.head_temperature(), "top_p_fields": self.top_p_fields,
                "top_repeat": self.top_repeat, "bass_repeat": self.bass_repeat, "echo": self.echo,
                "line_tilt": self.line_tilt, "chord_join": self.chord_join, "span_hold": self.span_hold}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_card(cls, card: dict, **overrides) -> "Sampling":
        """The card's chosen sampling, with every override that is not None on top; validated."""
        known = {f.name for f in fields(cls)}
        chosen = {k: v for k, v in (card.get("sampling") or {}).items() if k in known}
        for name in ("top_p_fields", "register"):  # lists in JSON
            if chosen.get(name) is not None:
                chosen[name] = tuple(chosen[name])
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
        if not self.top_p_fields or not set(self.top_p_fields) <= set(FIELD_ORDER):
            raise CadenzaError(f"top-p fields {', '.join(self.top_p_fields) or 'none'}: choose from {', '.join(FIELD_ORDER)}")
        if self.density not in DENSITY_WORDS and not isinstance(self.density, (int, float)):
            raise CadenzaError(f"density {self.density!r} is not notes per second, 'auto', 'random' or 'hold'")
        if isinstance(self.density, (int, float)) and not (DENSITY_RANGE[0] <= self.density <= DENSITY_RANGE[1]):
            raise CadenzaError(f"density {self.density} notes/s is outside {DENSITY_RANGE[0]}-{DENSITY_RANGE[1]}")
        if self.register is not None and not (len(self.register) == 2 and 0 <= self.register[0] <= self.register[1] <= 127):
            raise CadenzaError(f"register {self.register} is not a lowest and a highest pitch 0-127")
        if not 0 <= self.echo <= 1:
            raise CadenzaError(f"echo {self.echo} is outside 0-1")
        if not 0 < self.top_repeat <= 1:
            raise CadenzaError(f"top-repeat {self.top_repeat} is outside (0, 1]")
        if not 0 < self.bass_repeat <= 1:
            raise CadenzaError(f"bass-repeat {self.bass_repeat} is outside (0, 1]")
        if not 0 <= self.line_tilt <= LINE_TILT_MAX:
            raise CadenzaError(f"line-tilt {self.line_tilt} is outside 0-{LINE_TILT_MAX:g}")
        if not 0 < self.chord_join <= 1:
            raise CadenzaError(f"chord-join {self.chord_join} is outside (0, 1]")
        if not 0 <= self.span_hold <= SPAN_HOLD_MAX:
            raise CadenzaError(f"span-hold {self.span_hold} is outside 0-{SPAN_HOLD_MAX:g} semitones")
        if self.answer not in ANSWERS:
            raise CadenzaError(f"answer {self.answer!r} is not one of {', '.join(ANSWERS)}")
        if self.dynamics is not None and not 1 <= self.dynamics <= 127:
            raise CadenzaError(f"dynamics {self.dynamics} is outside 1-127 (a mean velocity)")
        if self.key not in (None, "auto", "random"):
            try:
                parse_key(self.key)
            except ValueError as error:
                raise CadenzaError(str(error)) from None


def parse_density(text: str | None):
    """'6' -> 6.0, 'auto', 'random' and 'hold' stay, 'none' -> None; a one-line error otherwise."""
    if text is None or text.lower() == "none":
        return None
    if text.lower() in DENSITY_WORDS:
        return text.lower()
    try:
        value = float(text)
    except ValueError:
        raise CadenzaError(f"--density takes notes per second, 'auto', 'random', 'hold' or 'none', not {text!r}") from None
    if not math.isfinite(value) or not (DENSITY_RANGE[0] <= value <= DENSITY_RANGE[1]):
        raise CadenzaError(f"--density {text} is outside {DENSITY_RANGE[0]}-{DENSITY_RANGE[1]} notes/s")
    return value


def parse_register(text: str | None) -> tuple | None:
    """'48-72' or 'C3-C5' (MIDI numbers or note names, lowest first) -> (48, 72); 'none' -> None."""
    if text is None or text.strip().lower() == "none":
        return None
    import pretty_midi

    def pitch(word: str) -> int:
        word = word.strip()
        try:
            return int(word) if word.lstrip("-").isdigit() else int(pretty_midi.note_name_to_number(word))
        except ValueError:
            raise CadenzaError(f"register {text!r}: {word!r} is not a MIDI number or a note name like C4") from None

    low, separator, high = text.strip().partition("-")
    if not separator or not low or not high:
        raise CadenzaError(f"register {text!r} is not LOWEST-HIGHEST, e.g. 48-72 or C3-C5")
    register = (pitch(low), pitch(high))
    if not 0 <= register[0] <= register[1] <= 127:
        raise CadenzaError(f"register {text!r}: lowest and highest must be 0-127, lowest first")
    return register


def parse_key_option(text: str | None):
    """'D minor' stays, 'auto' and 'random' stay, 'none' -> None; a one-line error for an unreadable key."""
    if text is None or text.lower() == "none":
        return None
    if text.lower() in ("auto", "random"):
        return text.lower()
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


def random_keys(count: int, rng: np.random.Generator) -> list:
    """`count` keys drawn uniformly from the 24 major and minor keys, as names ('D minor')."""
    keys = all_keys()
    return [str(keys[index]) for index in rng.integers(0, len(keys), count)]


def typical_density(card: dict) -> float:
    """The training pieces' median notes per second, from the card ('--density auto')."""
    return float((card.get("controls") or {}).get("typical_density", 8.0))


def random_densities(count: int, card: dict, rng: np.random.Generator) -> list:
    """`count` densities (notes/s) drawn from the card's quantiles of the training pieces' densities."""
    quantiles = (card.get("controls") or {}).get("density_quantiles")
    if not quantiles:
        return [typical_density(card)] * count
    return [float(v) for v in np.interp(rng.random(count), np.linspace(0, 1, len(quantiles)), quantiles)]


def resolve_random(sampling: Sampling, card: dict, rng: np.random.Generator) -> Sampling:
    """One stream's Sampling with 'random' density and key drawn (and then kept)."""
    if sampling.density == "random":
        sampling = replace(sampling, density=random_densities(1, card, rng)[0])
    if sampling.key == "random":
        sampling = replace(sampling, key=random_keys(1, rng)[0], key_strict=False)
    return sampling


def stream_controls(sampling: Sampling, card: dict, streams: int, rng: np.random.Generator, played_pitches=None):
    """Control vectors [streams, CONTROL_SIZE]; 'random' density or key is drawn for each stream."""
    if "random" not in (sampling.density, sampling.key):
        return np.repeat(controls_for(sampling, card, played_pitches)[None], streams, axis=0)
    return np.stack([controls_for(resolve_random(sampling, card, rng), card, played_pitches) for _ in range(streams)])


def controls_for(sampling: Sampling, card: dict, played_pitches=None) -> np.ndarray:
    """The control vector for a Sampling: 'auto' density is the card's typical density, 'auto' key
    the profile of `played_pitches` (no key while nothing was played). 'random' is resolved per
    stream by stream_controls or resolve_random, before this."""
    if "random" in (sampling.density, sampling.key):
        raise ValueError("'random' is drawn per stream: use stream_controls or resolve_random")
    density = typical_density(card) if sampling.density == "auto" else sampling.density
    density = None if density == "hold" else density  # held streams start free (DensityHold)
    profile = None
    if sampling.key == "auto":
        profile = played_profile(played_pitches if played_pitches is not None else [])
    elif sampling.key is not None:
        profile = key_profile(parse_key(sampling.key), scale_profiles(card), strict=sampling.key_strict)
    return control_vector(profile, density, sampling.dynamics)


# An answer follows the call's last notes: about 20 s of MAESTRO playing. The same window live
# (the stream's call) and offline (a primer), so the two answer alike.
CALL_NOTES = 200


def follow_call(sampling: Sampling, call: np.ndarray) -> tuple[Sampling, float | None]:
    """What an answer to `call` (notes, NOTE_DTYPE) plays with when `sampling.answer` is 'follow':
    the call's key (as '--key auto' hears it) when no key is asked for, its mean velocity when no
    dynamics are, and its notes per second in place of a drawn density ('random': asked for from
    the first note; 'hold': the density to hold to). Returns (Sampling, the density to hold or
    None). Measured on MAESTRO calls (evaluate --continuation), each raises how well the answer
    belongs to the call."""
    call = call[-CALL_NOTES:]
    if sampling.answer != "follow" or len(call) < 2:
        return sampling, None
    changes = {}
    if sampling.key is None:
        changes["key"] = "auto"
    if sampling.dynamics is None:
        changes["dynamics"] = float(np.clip(np.mean(call["velocity"]), 1, 127))
    if sampling.register is None:
        changes["register"] = (int(call["pitch"].min()), int(call["pitch"].max()))
    held = None
    if sampling.density in ("hold", "random"):
        # The pace while playing: a pause between phrases (a live call spans several) is not played.
        steps = call["step"][1:]
        steps = steps[steps < CALL_PAUSE_SECONDS]
        held = float(np.clip(len(steps) / steps.sum(), *DENSITY_RANGE)) if steps.sum() > 0 else None
        if sampling.density == "random" and held is not None:  # a drawn density gives way to the call's
            changes["density"], held = held, None
    return replace(sampling, **changes), held


# A pitch this many semitones beyond the register is e times less likely than the network has it.
REGISTER_SOFTNESS = 3.0


def register_weights(register: tuple | None) -> np.ndarray | None:
    """[128] how much of the network's probability each pitch keeps (1 inside `register`, falling
    off beyond it by REGISTER_SOFTNESS), or None for a free register. The sampler draws from the
    network's distribution times these (Runtime.sample's pitch_weights)."""
    if register is None:
        return None
    pitches = np.arange(128)
    beyond = np.maximum(np.maximum(register[0] - pitches, pitches - register[1]), 0)
    return np.exp(-beyond / REGISTER_SOFTNESS)


class DensityHold:
    """Free play that keeps to a density like a real piece's ('--density hold').

    Left alone, the network starts dense (about 15 notes/s over its first 300 notes) and then
    wanders below the data's density for thousands of notes. Each stream draws its own density
    from the data's spread of pieces (as 'random' does) but plays free while its last
    `window_notes` notes stay within `tolerance` of it; when they stray further the density control
    asks for it, and lets go once they are back within half the tolerance. So a stream keeps the
    network's own ebb and flow, and keeps to a real piece's pace.
    """

    def __init__(self, own_densities, window_notes: int = 200, tolerance: float = 0.15, asking: bool = False):
        self.window_notes, self.tolerance = window_notes, tolerance
        self.own = np.asarray(own_densities, dtype=np.float64)  # notes per second, one per stream
        self.steps = np.zeros((window_notes, len(self.own)))
        self.count = 0
        # The density asked for now (NaN: free). `asking`: ask from the first note (an answer to a
        # call starts at the call's pace), until the window shows the stream there.
        self.targets = self.own.copy() if asking else np.full(len(self.own), np.nan)

    def heard(self, step_seconds: np.ndarray) -> None:
        """Count steps [T, B] that were played, not drawn (a call): the hold starts from their pace."""
        for steps in np.asarray(step_seconds)[-self.window_notes:]:
            self.steps[self.count % self.window_notes] = steps
            self.count += 1

    def observe(self, step_seconds: np.ndarray) -> bool:
        """Note the steps just drawn [B]; True when `targets` changed (the controls need setting)."""
        self.steps[self.count % self.window_notes] = step_seconds
        self.count += 1
        if self.count < self.window_notes or self.count % 10:
            return False
        drift = np.abs(np.log(self.window_notes / np.maximum(self.steps.sum(axis=0), 1e-3) / self.own))
        targets = np.where(drift > np.log1p(self.tolerance), self.own,
                           np.where(drift < np.log1p(self.tolerance / 2), np.nan, self.targets))
        changed = not np.array_equal(np.isnan(targets), np.isnan(self.targets))
        self.targets = targets
        return changed

"""Command-line options both sides share: bounded numbers and the sampling options."""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import click

from models.sampling import ANSWERS, DENSITY_RANGE, LINE_TILT_MAX, SPAN_HOLD_MAX, TEMPERATURE_RANGE, Sampling, parse_density, parse_key_option, parse_register


class BoundedFloat(click.FloatRange):
    """A float in a range that also refuses nan and inf (click's FloatRange lets nan through)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


# Models exported since the pitch temperature went by class (the card's pitch_temperature_scope).
PITCH_TEMPERATURE_NOTE = (" It tempers the pitch class (how clear the key is); the octave is drawn as the network "
                          "has it, so a low one does not close the hands in.")


def sampling_options(function):
    """--temperature, --top-p, --<field>-temperature, --density, --key, --register...; left out, the card's choice."""
    options = [
        click.option("--temperature", type=BoundedFloat(*TEMPERATURE_RANGE),
                     help="Sampling temperature of every field [default: the model card's]."),
        click.option("--top-p", type=BoundedFloat(0, 1, min_open=True), help="Nucleus sampling (1 = off)."),
        click.option("--top-p-fields", help="The fields the nucleus cuts, e.g. 'pitch' or 'step,pitch' [default: the model card's]."),
        *[click.option(f"--{name}-temperature", type=BoundedFloat(*TEMPERATURE_RANGE),
                       help=f"Temperature of the {name} field alone." + PITCH_TEMPERATURE_NOTE * (name == "pitch"))
          for name in ("step", "pitch", "duration", "velocity")],
        click.option("--density", help=f"Target notes per second ({DENSITY_RANGE[0]:g}-{DENSITY_RANGE[1]:g}), "
                                       "'auto' (the data's typical value), 'random' (one per stream, as the data's pieces vary), "
                                       "'hold' (free, then kept near the stream's own opening density) or 'none' (free). "
                                       "In musical time (--bpm, --sync) it scales with the tempo, as the rhythm does."),
        click.option("--dynamics", type=BoundedFloat(1, 127),
                     help="Target mean velocity (1-127) of the notes ahead [default: free]."),
        click.option("--key", "key_name", help="Key to play in: 'D minor', 'F# major', 'auto' (follow the player), 'random' (one per stream) or 'none'."),
        click.option("--register", "register_text",
                     help="Keep to a register, softly: 'C3-C5' or '48-72' (lowest-highest) or 'none'. "
                          "An answer to a call keeps to the call's own unless you set one [default: free]."),
        click.option("--top-repeat", type=BoundedFloat(0, 1, min_open=True),
                     help="How much of its probability a chord keeps that starts on the last chord's top note "
                          "(1: as the network has it; lower: the melody strikes its last note again less) "
                          "[default: the model card's]."),
        click.option("--bass-repeat", type=BoundedFloat(0, 1, min_open=True),
                     help="The same for the bass: how much of its probability a note keeps that strikes the last chord's "
                          "lowest note again as its own chord's lowest (lower: the left hand hammers one key less) "
                          "[default: the model card's]."),
        click.option("--line-tilt", type=BoundedFloat(0, LINE_TILT_MAX),
                     help="How far the melody's and the bass's intervals are drawn toward the pianists' "
                          "(0: as the network has them, 1: fully; the network's lines leap too rarely) "
                          "[default: the model card's]."),
        click.option("--chord-join", type=BoundedFloat(0, 1, min_open=True),
                     help="How much of its probability a note keeps that joins the chord being played "
                          "(1: as the network has it; lower: fewer notes struck together) [default: the model card's]."),
        click.option("--span-hold", type=BoundedFloat(0, SPAN_HOLD_MAX),
                     help="Keep near the span of the last 200 notes: a pitch N semitones beyond it is e^(N/value) "
                          "times less likely (the network wanders over more of the keyboard than a pianist; "
                          "0: off; a stream keeping to a --register, or an answer to its call's, is left to it) "
                          "[default: the model card's]."),
        click.option("--echo", type=BoundedFloat(0, 1),
                     help="The chance that the melody carries on a figure it played before (or the player did), "
                          "where the network finds it plausible: motifs that come back (0: never) [default: the model card's]."),
        click.option("--answer", type=click.Choice(ANSWERS),
                     help="An answer to a call (--primer, or what the player played): 'follow' takes the call's key, "
                          "pace, dynamics and register where you left them free; 'free' plays as without a call [default: follow]."),
    ]
    return functools.reduce(lambda f, option: option(f), reversed(options), function)


SAMPLING_OPTION_NAMES = ("temperature", "top_p", "top_p_fields", "step_temperature", "pitch_temperature", "duration_temperature",
                         "velocity_temperature", "dynamics", "answer", "top_repeat", "bass_repeat", "echo", "line_tilt", "chord_join", "span_hold", "density", "key_name", "register_text")


def sampling_from_options(card: dict, options: dict) -> Sampling:
    """A Sampling from the parsed options (popped from `options`), on top of the card's defaults.

    'none' for --density or --key turns off a control the card's defaults would give.
    """
    values = {name: options.pop(name, None) for name in SAMPLING_OPTION_NAMES}
    if values["top_p_fields"] is not None:
        values["top_p_fields"] = tuple(name.strip() for name in values["top_p_fields"].split(",") if name.strip())
    density_text, key_text, register_text = values.pop("density"), values.pop("key_name"), values.pop("register_text")
    sampling = Sampling.from_card(card, **values)
    changes = {}
    if density_text is not None:
        changes["density"] = parse_density(density_text)
    if key_text is not None:
        changes["key"] = parse_key_option(key_text)
    if register_text is not None:
        changes["register"] = parse_register(register_text)
    sampling = replace(sampling, **changes)
    sampling.validate()
    return sampling

"""General MIDI instruments by name or program number."""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

from models.errors import CadenzaError


def gm_names() -> list[str]:
    """The 128 General MIDI program names, index = program number (0-127)."""
    from pretty_midi.constants import INSTRUMENT_MAP

    return list(INSTRUMENT_MAP)


def resolve_instrument(value) -> int:
    """A GM program number from a name as GM spells it (any case) or a number 0-127."""
    text = str(value).strip()
    if text.isdigit():
        program = int(text)
        if 0 <= program <= 127:
            return program
        raise CadenzaError(f"instrument program {program} is out of range 0-127")
    names = gm_names()
    lowered = {name.lower(): program for program, name in enumerate(names)}
    if text.lower() in lowered:
        return lowered[text.lower()]
    close = difflib.get_close_matches(text.lower(), list(lowered), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(repr(names[lowered[c]]) for c in close)}?" if close else ""
    raise CadenzaError(f"unknown instrument {text!r}{hint} (a General MIDI name or a program 0-127)")


def instrument_name(program: int) -> str:
    return gm_names()[program]


# FluidR3 GM (Debian's fluid-soundfont-gm, which `make` installs): full-bandwidth piano samples,
# loaded in 0.2-0.4 s. MuseScore General has the better piano (velocity layers, a damper release)
# but took 3.5-14 s to load; the comparison is `python -m bench.soundfonts` (README, "The sound").
PREFERRED_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def fallback_soundfont() -> Path:
    """The General MIDI soundfont bundled with pretty_midi (TimGM6mb, 6 MB), found without importing pretty_midi."""
    spec = importlib.util.find_spec("pretty_midi")
    return Path(spec.origin).parent / "TimGM6mb.sf2"


def default_soundfont() -> Path:
    """FluidR3 GM where it is installed, else TimGM6mb."""
    return PREFERRED_SOUNDFONT if PREFERRED_SOUNDFONT.is_file() else fallback_soundfont()


def check_soundfont(path=None) -> Path:
    """The soundfont to use (default: default_soundfont()), or a one-line error if FluidSynth cannot load it.

    FluidSynth's sfload returns -1 for a file that is not a SoundFont 2; rendering with it anyway
    would give a square-wave fallback, not an error.
    """
    from models.stderr import silenced_stderr

    path = Path(path) if path else default_soundfont()
    if not path.is_file():
        raise CadenzaError(f"soundfont not found: {path}")
    import fluidsynth

    synth = fluidsynth.Synth()
    try:
        with silenced_stderr():
            soundfont_id = synth.sfload(str(path))
    finally:
        synth.delete()
    if soundfont_id < 0:
        raise CadenzaError(f"cannot load soundfont {path}: not a SoundFont 2 file FluidSynth can read")
    return path

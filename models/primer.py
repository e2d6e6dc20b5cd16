"""A primer: a MIDI file whose notes set the model's state before it plays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.errors import CadenzaError
from models.notes import MidiError, read_notes


def read_primer(path: Path) -> np.ndarray:
    """The primer's notes, or a one-line error if it is unreadable or has none."""
    try:
        notes = read_notes(path)
    except MidiError as error:
        raise CadenzaError(f"primer {path}: {error}") from None
    if len(notes) == 0:
        raise CadenzaError(f"primer {path} has no notes")
    return notes

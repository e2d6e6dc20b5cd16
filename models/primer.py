"""A primer: a MIDI file whose notes set the model's state before it plays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.errors import CadenzaError
from models.notes import MidiError, Representation, read_notes


def read_primer(path: Path, card: dict | None = None) -> np.ndarray:
    """The primer's notes, read as the model's training data was (its card's representation), or a
    one-line error if it is unreadable or has none."""
    try:
        notes = read_notes(path, Representation.of_card(card or {}))
    except MidiError as error:
        raise CadenzaError(f"primer {path}: {error}") from None
    if len(notes) == 0:
        raise CadenzaError(f"primer {path} has no notes")
    return notes

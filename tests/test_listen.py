"""It listens, live: a phrase played into `cadenza-control` on a JACK server, and the answer heard
on cadenza's port, with --answer follow (the default) and free."""

import time

import mido
import numpy as np
import pytest

from models.controls import parse_key, scale_mask
from test_stream import controlled_stream

# A quiet phrase in F# major, in the middle register: 24 notes, 4 a second.
PHRASE_KEY = "F# major"
PHRASE_VELOCITY = 30


def play_phrase(control_out) -> None:
    scale = [p for p in range(54, 79) if scale_mask(parse_key(PHRASE_KEY))[p % 12]]
    pitches = np.random.default_rng(0).choice(scale, 24)
    for pitch in pitches:
        control_out.send(mido.Message("note_on", note=int(pitch), velocity=PHRASE_VELOCITY))
        time.sleep(0.2)
        control_out.send(mido.Message("note_off", note=int(pitch)))
        time.sleep(0.05)


def answer_to_phrase(jack_midi, port: str, *extra: str) -> list:
    """The first 40 notes cadenza plays after the phrase (it answers once the player stops)."""
    with controlled_stream(jack_midi, port, "--seed", "3", *extra) as (_, listener, control_out):
        play_phrase(control_out)
        ended = time.monotonic()
        return listener.wait_for_notes(40, since=ended + 0.3, timeout=30)


@pytest.mark.slow
def test_an_answer_follows_the_key_and_dynamics_of_the_call(jack_midi):
    mask = scale_mask(parse_key(PHRASE_KEY))
    follow = answer_to_phrase(jack_midi, "follower")
    free = answer_to_phrase(jack_midi, "free-answer", "--answer", "free")
    in_key = {name: float(np.mean(mask[np.array([m.note for m in notes]) % 12])) for name, notes in
              (("follow", follow), ("free", free))}
    loudness = {name: float(np.mean([m.velocity for m in notes])) for name, notes in (("follow", follow), ("free", free))}
    assert in_key["follow"] > 0.85, in_key
    assert abs(loudness["follow"] - PHRASE_VELOCITY) < 15 < abs(loudness["free"] - PHRASE_VELOCITY), loudness

"""It listens, live: a phrase played into `cadenza-control` on a JACK server, and the answer heard
on cadenza's port, with --answer follow (the default) and free."""

import time

import mido
import numpy as np
import pytest

from conftest import REPO

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
    # Free, the network still hears the quiet call, and with memory it answers quieter than it
    # plays alone (36-55 over five seeds): what follow adds is the call's level as a control.
    distance = {name: abs(level - PHRASE_VELOCITY) for name, level in loudness.items()}
    assert distance["follow"] < 15 and distance["follow"] < distance["free"], loudness


def _call_over_a_held_bass(bars: int = 10) -> np.ndarray:
    """A quiet call in D minor: each bar a bass note held under six right-hand notes, so its notes
    end in another order than they start (as a pianist's do)."""
    from models.notes import NOTE_DTYPE

    rng = np.random.default_rng(5)
    scale = [p for p in range(62, 78) if scale_mask(parse_key("D minor"))[p % 12]]
    notes = []
    for bar in range(bars):
        notes.append((38 if bar % 2 == 0 else 45, 0.2 if bar else 0.0, 1.3, 40))
        notes += [(int(rng.choice(scale)), 0.0 if index == 0 else 0.2, 0.15, 45) for index in range(6)]
    return np.array(notes, dtype=NOTE_DTYPE)


@pytest.mark.slow
def test_a_live_answer_scores_as_the_offline_answer_to_the_same_call(jack_server):
    """The call played into the control input, the answer heard on the port, both scored against
    the call as `evaluate --continuation` does: live must land among offline answers' figures."""
    from bench.listen import live_answer
    from models.options import sampling_from_options
    from models.runtime import Runtime, read_card
    from training.continuation import continue_calls, distances

    call = _call_over_a_held_bass()
    live = live_answer(call, "free", "agree", seed=4, answer_notes=80)
    assert live.exit_code == 0 and len(live.notes) == 80, (live.exit_code, len(live.notes), live.stderr[-500:])
    sampling = sampling_from_options(read_card(REPO / "models" / "default"), {})
    offline = continue_calls(Runtime(REPO / "models" / "default", seed=1), sampling, np.repeat(call[None], 8, axis=0), 80)
    offline_distances = [distances(call, answer) for answer in offline]
    live_distances = distances(call, live.notes)
    # How far beyond the range of the 8 offline answers a live figure may fall (key: pitch-class L1
    # distance, 0-2; register: semitones; density: log ratio; dynamics: velocity).
    slack = {"key": 0.15, "register_mean": 3.0, "density": 0.25, "dynamics": 8.0}
    for figure, allowed in slack.items():
        values = [row[figure] for row in offline_distances]
        assert min(values) - allowed <= live_distances[figure] <= max(values) + allowed, (figure, live_distances, values)

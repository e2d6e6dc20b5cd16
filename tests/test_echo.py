"""The top line's memory (models/echo.py) on hand-made lines and chords, and the sampler's echo
on the shipped model: figures come back, and what was drawn still scores as drawn."""

from __future__ import annotations

import numpy as np

from models.echo import NO_PITCH, TopLineEcho, echo_targets
from training import texture


def test_a_figure_played_before_is_carried_on_as_it_went_on_then():
    # +2 +1 then +2, played from 62; now +2 +1 from 52: a sequence, so 57 comes next.
    assert echo_targets(np.array([[60, 62, 64, 65, 67, 50, 52, 54, 55]])).tolist() == [57]
    # Of two earlier occurrences, the one played nearest the pitch the line is at now is followed
    # (it reached 65, the other 45; the line is at 75)...
    assert echo_targets(np.array([[60, 62, 64, 65, 67, 40, 42, 44, 45, 40, 70, 72, 74, 75]])).tolist() == [77]
    # ...and of those at one level, the latest (+2 +2 +1 went on by -7 the second time).
    assert echo_targets(np.array([[60, 62, 64, 65, 67, 60, 62, 64, 65, 58, 60, 62, 64, 65]])).tolist() == [58]
    # Two intervals are a figure (+3 +2, then +3): the three before them need not match.
    assert echo_targets(np.array([[60, 62, 65, 67, 70, 40, 41, 44, 46]])).tolist() == [49]
    assert echo_targets(np.array([[60, 62, 65, 67, 70, 40, 41, 44, 46]]), intervals=3).tolist() == [NO_PITCH]


def test_no_echo_without_a_figure_heard_before_nor_from_repeated_notes_alone():
    assert echo_targets(np.array([[60, 62, 64, 65, 67, 50, 53, 57, 58]])).tolist() == [NO_PITCH]
    assert echo_targets(np.array([[NO_PITCH] * 5 + [60, 62, 64, 65]])).tolist() == [NO_PITCH]
    assert echo_targets(np.array([[62, 60, 60, 60, 60, 50, 60, 60, 60, 60]])).tolist() == [NO_PITCH]
    assert echo_targets(np.array([[10, 12, 14, 15, 127, 100, 102, 104, 105]])).tolist() == [NO_PITCH]  # beyond 127
    # The figure just played must not be found overlapping itself.
    assert echo_targets(np.array([[NO_PITCH] * 3 + [60, 62, 64, 66, 68]])).tolist() == [NO_PITCH]


def test_the_top_line_is_each_chords_highest_note_and_a_chord_rises_to_its_target():
    echo = TopLineEcho(1)
    # Chords of a bass and a melody note (onsets 0.5 s apart, the melody 10 ms after the bass):
    # the melody figure 72 74 76 77 79, then 60 62 64 65: a target of 67 for the next chord.
    for melody in (72, 74, 76, 77, 79, 60, 62, 64, 65):
        echo.strike(np.array([36]), np.array([0.5]))
        echo.strike(np.array([melody]), np.array([0.01]))
    assert echo.targets(np.array([0.5])).tolist() == [67]  # a chord starting now
    echo.strike(np.array([36]), np.array([0.5]))  # its bass: the chord has not reached 67 yet
    assert echo.targets(np.array([0.01])).tolist() == [67]
    echo.strike(np.array([67]), np.array([0.01]))  # reached: no more echo in this chord
    assert echo.targets(np.array([0.01])).tolist() == [NO_PITCH]


def test_the_echo_brings_figures_back_and_what_was_drawn_still_scores_as_drawn():
    from dataclasses import replace

    from models.runtime import Runtime
    from models.sampling import Sampling
    from training.style import generate_pieces

    recurrence = {}
    for echo in (0.0, 1.0):
        runtime = Runtime(seed=0, backend="tflite")
        sampling = replace(Sampling.from_card(runtime.card), echo=echo)
        pieces = generate_pieces(runtime, sampling, 32, 300)
        recurrence[echo] = float(np.mean([texture.motif_recurrence(texture.heard(piece)) for piece in pieces]))
    assert recurrence[1.0] > 2 * recurrence[0.0] + 0.02, recurrence
    runtime = Runtime(batch=8, seed=1, backend="tflite")
    notes = np.stack([runtime.sample(1.0, echo=1.0) for _ in range(200)], axis=1)
    used = runtime.last_log_prob
    scores = Runtime(backend="tflite").score(notes, start=runtime.start_notes)
    for field in ("step", "pitch", "duration", "velocity"):
        assert np.allclose(scores[field][:, -1], used[field], atol=1e-4), field


def test_a_figure_carried_on_for_echo_run_chords_is_let_go():
    from models.echo import ECHO_RUN

    echo = TopLineEcho(1)
    figure = [60, 62, 64, 65, 67, 69]
    for pitch in figure * 2:  # stated twice: from here on each next note is the figure's
        echo.strike(np.array([pitch]), np.array([0.5]))
    offered = 0
    for index in range(3 * ECHO_RUN):
        target = echo.targets(np.array([0.5]))[0]
        if target == NO_PITCH:
            break
        assert target == figure[index % len(figure)]
        echo.took(np.array([0]))
        echo.strike(np.array([target]), np.array([0.5]))
        offered += 1
    assert offered == ECHO_RUN
    for pitch in (50, 53):  # the line goes elsewhere, no echo in a chord: the run is over
        echo.strike(np.array([pitch]), np.array([0.5]))
    assert echo.run[0] == 0

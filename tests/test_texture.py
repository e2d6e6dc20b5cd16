"""Texture and phrasing features on hand-made passages with known answers, the classifier
two-sample test on sets with known answers, and the piano's restrike limit in the sampler."""

import numpy as np
import pytest

from conftest import shipped_model_figure
from models.notes import NOTE_DTYPE, make_notes, onsets
from training import texture
from training.features import feature_table
from training.two_sample import classifier_test


def sustained_chord():
    """A C major chord held 2 s, struck together, then a single G held 1 s."""
    return make_notes([60, 64, 67, 79], [0.0, 0.0, 0.0, 2.0], [2.0, 2.0, 2.0, 1.0], [50, 60, 70, 80])


def staccato_run(count=16):
    """A scale of 20 ms pecks, one every 0.4 s."""
    return make_notes(60 + np.arange(count) % 12, [0.0] + [0.4] * (count - 1), [0.02] * count, [64] * count)


def repeated_motif(times=4):
    """The figure C-D-E-C-G (intervals +2 +2 -4 +7), then a leap down, stated `times` times, in chords of two."""
    figure = [60, 62, 64, 60, 67, 48]
    tops = np.tile(figure, times)
    pitches = np.ravel(np.stack([tops - 12, tops], axis=1))  # bass note then the top note, together
    steps = np.ravel(np.stack([np.full(len(tops), 0.25), np.zeros(len(tops))], axis=1))
    steps[0] = 0.0
    return make_notes(pitches, steps, np.full(len(pitches), 0.2), np.full(len(pitches), 64))


def test_sustained_chord_is_layered_and_held():
    notes = sustained_chord()
    assert texture.polyphony_over_time(notes) == pytest.approx((3 * 2.0 + 1 * 1.0) / 3.0)
    assert texture.median_duration(notes) == 2.0 and texture.short_note_fraction(notes) == 0
    # The chord's notes last exactly until the next chord: legato ratio 1 (class 1-2 of the histogram).
    assert np.allclose(texture.legato_ratios(notes), 1.0)
    assert texture.legato_histogram(notes)[5] == 1.0
    assert texture.velocity_pitch_correlation(notes) > 0.9  # louder as it goes up
    assert list(texture.top_line(notes)) == [67, 79] and list(texture.bass_line(notes)) == [60, 79]


def test_a_note_cut_short_by_its_key_struck_again_is_counted_and_one_that_ended_is_not():
    # C held 2 s, struck again after 0.5 s (cut by 1.5 s); E held 0.4 s, struck again after 0.5 s
    # (it had ended); G held 1 s, struck again 0.98 s on (cut by 20 ms: less than a cut short).
    notes = make_notes([60, 64, 67, 60, 64, 67], [0.0, 0.0, 0.0, 0.5, 0.0, 0.48],
                       [2.0, 0.4, 1.0, 0.3, 0.3, 0.3], [64] * 6)
    assert texture.cut_by_restrike_fraction(notes) == pytest.approx(1 / 6)
    assert texture.cut_by_restrike_fraction(texture.heard(notes)) == 0.0  # as heard, nothing is left to cut
    figures = texture.texture_figures([notes, sustained_chord()])
    assert figures["cut_by_restrike_fraction"] == pytest.approx(1 / 10)  # pooled over both pieces' notes
    assert "cut_by_restrike_fraction" not in feature_table([notes, sustained_chord()])  # not the classifier's


def test_staccato_run_is_short_and_detached():
    notes = staccato_run()
    assert texture.short_note_fraction(notes) == 1.0
    assert texture.polyphony_over_time(notes) == pytest.approx(1.0)
    assert np.allclose(texture.legato_ratios(notes), 0.02 / 0.4)
    assert texture.legato_histogram(notes)[0] == 1.0  # all under 1/16
    assert texture.top_line_repeats(notes) == 0
    # Rising semitones: the run of four +1 steps comes back 4 times in its 12 patterns.
    assert texture.motif_recurrence(notes) == pytest.approx(4 / 12)


def test_repeated_motif_recurs_and_repeats_are_counted():
    notes = repeated_motif(times=4)
    # 4 x 6 top-line notes: 23 intervals, 20 patterns of 4; the first 6 positions are first sights,
    # every later pattern is one seen 6 notes before.
    assert texture.motif_recurrence(notes) == pytest.approx(14 / 20)
    assert texture.motif_recurrence(repeated_motif(times=1)) == 0
    intervals = texture.top_line_intervals(notes)
    assert intervals[12 + 2] == pytest.approx(8 / 23) and intervals.sum() == pytest.approx(1)
    # Beyond an octave, the outer classes: the leap of -19 in each figure, the +12 between figures.
    assert intervals[0] == pytest.approx(4 / 23) and intervals[24] == pytest.approx(3 / 23)
    same = make_notes([72] * 5, [0.0] + [0.3] * 4, [0.2] * 5, [64] * 5)
    assert texture.top_line_repeats(same) == 1.0 and texture.motif_recurrence(same) == 0  # no motif of repeats


def test_restrike_cuts_what_is_heard():
    # A key struck again 50 ms into its 1 s note: the first sounds for 50 ms.
    notes = make_notes([60, 60], [0.0, 0.05], [1.0, 1.0], [64, 64])
    assert np.allclose(texture.heard(notes)["duration"], [0.05, 1.0])
    assert texture.short_note_fraction(texture.heard(notes)) == 0
    assert feature_table([notes])["median_duration"][0] == pytest.approx(0.525)


def test_phrase_dynamics_hears_swells_not_accents():
    steps = [0.0] + [0.1] * 79
    accents = make_notes([60] * 80, steps, [0.1] * 80, [40, 90] * 40)  # loud-soft every note, same every phrase
    swell = make_notes([60] * 80, steps, [0.1] * 80, np.repeat([40, 90], 20).tolist() * 2)
    assert texture.phrase_dynamics(accents) < 1 and texture.phrase_dynamics(swell) > 20


def _random_pieces(rng, count, shift=0):
    """Random passages whose features vary piece to piece; `shift` transposes and slows them."""
    pieces = []
    for _ in range(count):
        length = 120
        centre = rng.integers(50, 70) + shift
        pitches = np.clip(centre + rng.integers(-12, 13, length), 21, 108)
        steps = rng.exponential(0.12 * (1 + shift / 12), length) * (rng.random(length) > 0.2)
        pieces.append(make_notes(pitches, steps, rng.exponential(0.3, length) + 0.01, rng.integers(40, 90, length)))
    return pieces


def test_classifier_cannot_tell_halves_of_one_set_but_tells_a_shifted_copy():
    rng = np.random.default_rng(0)
    pieces = _random_pieces(rng, 120)
    first, second = feature_table(pieces[:60]), feature_table(pieces[60:])
    same = classifier_test(first, second, np.arange(60), np.arange(60), seed=0)
    assert 0.3 < same["auc"] < 0.7, same
    shifted = feature_table(_random_pieces(np.random.default_rng(0), 60, shift=7))
    different = classifier_test(first, shifted, np.arange(60), np.arange(60), seed=0)
    assert different["auc"] > 0.95 and different["accuracy"] > 0.85, different
    assert different["separating"][0]["importance"] > 0


def test_sampler_never_restrikes_a_key_within_50_ms():
    from models.runtime import MIN_RESTRIKE_SECONDS, Runtime

    def restrikes(runtime):
        notes = np.stack([runtime.sample(1.0) for _ in range(300)], axis=1)  # [B, T]
        count = 0
        for stream in notes:
            starts, last = onsets(stream), {}
            for start, pitch in zip(starts, stream["pitch"]):
                count += pitch in last and start - last[pitch] < MIN_RESTRIKE_SECONDS - 1e-9
                last[pitch] = start
        return count, notes

    free = Runtime(batch=32, seed=0, backend="tflite")
    free.min_restrike_seconds = 0.0
    assert restrikes(free)[0] > 20  # the network alone does it (a few per cent of notes)
    runtime = Runtime(batch=32, seed=0, backend="tflite")
    count, notes = restrikes(runtime)
    assert count == 0
    used = runtime.last_log_prob  # the redrawn notes still score as they were drawn
    scores = Runtime(backend="tflite").score(notes, start=runtime.start_notes)
    assert np.allclose(scores["pitch"][:, -1], used["pitch"], atol=1e-4)


def test_a_top_repeat_below_one_makes_the_top_line_strike_its_last_note_again_less():
    """Issue 17: the top line repeated its last note on 16 % of its steps (MAESTRO about 5 %).
    A chord that starts on the last chord's top note keeps `top_repeat` of its probability."""
    # The bass tilt off: a one-note chord struck again repeats the top line and the bass line at once.
    shares = {top_repeat: shipped_model_figure(texture.top_line_repeats, top_repeat=top_repeat, bass_repeat=1.0)
              for top_repeat in (1.0, 0.3)}
    assert shares[0.3] < 0.6 * shares[1.0], shares


def test_a_tilted_note_is_drawn_in_a_batch_as_in_one_stream():
    """Rejection sampling keeps a note with its acceptance, once: pitches weighted 0.5 come out at
    0.5 s / (1 - 0.5 s) of the notes, where s is their share untilted. Judging kept notes again
    in every round any stream of the batch needed kept them about 0.5 ** 8 of the time instead,
    so `render` and `evaluate` (a batch) drew another sampler than a live stream (one)."""
    from models.runtime import Runtime

    streams, start = 2048, np.array([(64, 0.0, 0.4, 70)], dtype=NOTE_DTYPE)[0]
    high = np.ones(128)
    high[60:] = 0.5
    shares = {}
    for label, weights in (("free", None), ("tilted", high)):
        runtime = Runtime(batch=streams, seed=1, backend="tflite")
        runtime.reset(start=start)
        notes = runtime.sample(pitch_weights=weights)
        shares[label] = float(np.mean(notes["pitch"] >= 60))
    expected = 0.5 * shares["free"] / (1 - 0.5 * shares["free"])
    assert 0.2 < shares["free"] < 0.9, shares
    assert abs(shares["tilted"] - expected) < 0.05, (shares, expected)

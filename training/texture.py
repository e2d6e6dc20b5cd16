"""Texture and phrasing features: what a listener hears beyond the notes' first-order statistics.

Texture is how notes are held and layered: very short notes, the legato ratio (a note's length
over the time to the next onset), how many notes sound at once over time, how velocity follows
pitch, and how loudness moves from phrase to phrase. Phrasing is the shape of the lines: the top
line (the highest note of each onset) and the bass line (the lowest), their intervals, repeated
top-line notes, and motifs (top-line interval patterns that come back within the excerpt).

Every function takes a note array (NOTE_DTYPE, sorted by onset) whose durations are as heard
(`heard`: a key struck again cuts its sounding note). Times in seconds, pitches in MIDI numbers.
"""

from __future__ import annotations

import numpy as np

from models.lines import LINE_CLASSES, interval_class
from models.notes import CHORD_SECONDS, cut_at_restrike, onsets

SHORT_NOTE_SECONDS = 0.032
# A note whose key is struck again this long or more before it would have ended is cut short.
CUT_SHORT_SECONDS = 0.05
# Legato ratio classes, as powers of two: under 1/16 (a peck) ... over 8 (held over many onsets).
LEGATO_EDGES = 2.0 ** np.arange(-4, 4)
MOTIF_INTERVALS = 4
PHRASE_SECONDS = 2.0


def heard(notes: np.ndarray) -> np.ndarray:
    """The notes with each duration cut where its key is struck again, as a piano sounds them."""
    starts = onsets(notes)
    result = notes.copy()
    result["duration"] = cut_at_restrike(starts, starts + notes["duration"], notes["pitch"]) - starts
    return result


def chord_groups(notes: np.ndarray) -> np.ndarray:
    """[N] the chord each note belongs to: an onset CHORD_SECONDS or more after the one before starts a new chord."""
    starts = onsets(notes)
    return np.concatenate(([0], np.cumsum(np.diff(starts) >= CHORD_SECONDS))).astype(np.int64)


def cut_by_restrike_fraction(notes: np.ndarray) -> float:
    """Share of notes as played (before `heard`) whose key is struck again CUT_SHORT_SECONDS or
    more before they would end, so they sound shorter than they were drawn. MAESTRO as prepared
    has none (a note there ends at its key's next strike at the latest), so a generated set's
    share is how often its notes are cut short: not a feature of the classifier, which would
    recognise every such excerpt by it alone."""
    return float(np.mean(_cut_short(notes, heard(notes)))) if len(notes) else 0.0


def _cut_short(played: np.ndarray, as_heard: np.ndarray) -> np.ndarray:
    """[N] booleans: which notes `heard` cut CUT_SHORT_SECONDS or more (the same notes, played and heard)."""
    return played["duration"] - as_heard["duration"] >= CUT_SHORT_SECONDS


def short_note_fraction(notes: np.ndarray) -> float:
    """Share of notes that sound for less than 32 ms."""
    return float(np.mean(notes["duration"] < SHORT_NOTE_SECONDS)) if len(notes) else 0.0


def median_duration(notes: np.ndarray) -> float:
    """Median note length, in seconds."""
    return float(np.median(notes["duration"])) if len(notes) else 0.0


def legato_ratios(notes: np.ndarray) -> np.ndarray:
    """Each note's length over the time from its onset to the next chord (notes of the last chord left out)."""
    starts = onsets(notes)
    groups = chord_groups(notes)
    chord_starts = starts[np.searchsorted(groups, np.arange(groups[-1] + 1))] if len(notes) else starts
    following = groups + 1
    has_next = following < len(chord_starts)
    gaps = chord_starts[following[has_next]] - starts[has_next]
    return notes["duration"][has_next] / np.maximum(gaps, 1e-6)


def legato_histogram(notes: np.ndarray) -> np.ndarray:
    """[9] share of notes per legato-ratio class: under 1/16, 1/16-1/8, ..., 4-8, over 8."""
    ratios = legato_ratios(notes)
    counts = np.bincount(np.searchsorted(LEGATO_EDGES, ratios, side="right"), minlength=len(LEGATO_EDGES) + 1).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def polyphony_over_time(notes: np.ndarray) -> float:
    """Mean number of notes sounding, over the time at least one sounds (MusPy's 'polyphony')."""
    if not len(notes):
        return 0.0
    starts = onsets(notes)
    times = np.concatenate((starts, starts + notes["duration"]))
    changes = np.concatenate((np.ones(len(notes)), -np.ones(len(notes))))
    order = np.lexsort((changes, times))  # at one instant, ends before starts
    sounding = np.cumsum(changes[order])[:-1]
    spans = np.diff(times[order])
    busy = sounding > 0
    return float((sounding[busy] * spans[busy]).sum() / max(spans[busy].sum(), 1e-9))


def velocity_pitch_correlation(notes: np.ndarray) -> float:
    """Pearson correlation of velocity with pitch (a pianist voices the melody above the rest)."""
    pitch, velocity = notes["pitch"].astype(np.float64), notes["velocity"].astype(np.float64)
    if len(notes) < 2 or pitch.std() == 0 or velocity.std() == 0:
        return 0.0
    return float(np.corrcoef(pitch, velocity)[0, 1])


def phrase_dynamics(notes: np.ndarray) -> float:
    """Spread (standard deviation) of the mean velocity of successive 2-second spans: phrase-level
    swells and fades, apart from note-to-note accents."""
    starts = onsets(notes)
    spans = ((starts - starts[0]) // PHRASE_SECONDS).astype(np.int64) if len(notes) else np.zeros(0, np.int64)
    counts = np.bincount(spans)
    sums = np.bincount(spans, weights=notes["velocity"].astype(np.float64))
    means = sums[counts > 0] / counts[counts > 0]
    return float(means.std()) if len(means) > 1 else 0.0


def top_line(notes: np.ndarray) -> np.ndarray:
    """The highest pitch of each chord, in order (the 'skyline' melody)."""
    if not len(notes):
        return np.zeros(0, np.int64)
    groups = chord_groups(notes)
    highest = np.full(groups[-1] + 1, -1, np.int64)
    np.maximum.at(highest, groups, notes["pitch"].astype(np.int64))
    return highest


def bass_line(notes: np.ndarray) -> np.ndarray:
    """The lowest pitch of each chord, in order."""
    if not len(notes):
        return np.zeros(0, np.int64)
    groups = chord_groups(notes)
    lowest = np.full(groups[-1] + 1, 128, np.int64)
    np.minimum.at(lowest, groups, notes["pitch"].astype(np.int64))
    return lowest


def _interval_histogram(line: np.ndarray) -> np.ndarray:
    """[25] share of intervals -12 .. +12 semitones (beyond an octave: the outer classes)."""
    counts = np.bincount(interval_class(line[1:], line[:-1]), minlength=LINE_CLASSES).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def top_line_intervals(notes: np.ndarray) -> np.ndarray:
    """[25] the top line's interval distribution."""
    return _interval_histogram(top_line(notes))


def bass_line_intervals(notes: np.ndarray) -> np.ndarray:
    """[25] the bass line's interval distribution."""
    return _interval_histogram(bass_line(notes))


def _repeat_share(line: np.ndarray) -> float:
    """Share of a line's steps that strike its last pitch again."""
    intervals = np.diff(line)
    return float(np.mean(intervals == 0)) if len(intervals) else 0.0


def top_line_repeats(notes: np.ndarray) -> float:
    """Share of top-line steps that strike its last pitch again."""
    return _repeat_share(top_line(notes))


def bass_line_repeats(notes: np.ndarray) -> float:
    """Share of bass-line steps that strike its last pitch again."""
    return _repeat_share(bass_line(notes))


def interval_patterns(line: np.ndarray, length: int) -> list:
    """Every run of `length` successive intervals of a line, as tuples, in order."""
    intervals = np.diff(line)
    return [tuple(intervals[i : i + length]) for i in range(len(intervals) - length + 1)]


def motif_recurrence(notes: np.ndarray, length: int = MOTIF_INTERVALS) -> float:
    """Share of the top line's interval patterns (`length` intervals) that come back later in the
    excerpt without overlapping themselves. A pattern of only repeated notes is no motif."""
    patterns = interval_patterns(top_line(notes), length)
    first_seen, recurring = {}, 0
    counted = 0
    for position, pattern in enumerate(patterns):
        if not any(pattern):
            continue
        counted += 1
        if pattern in first_seen and position - first_seen[pattern] >= length:
            recurring += 1
        else:
            first_seen.setdefault(pattern, position)
    return recurring / counted if counted else 0.0


def texture_figures(pieces: list) -> dict:
    """Figures over all the notes of a set of pieces (as heard, but for the share cut short by
    a restrike), as the texture goals state them."""
    played, pieces = pieces, [heard(piece) for piece in pieces]
    cut_short = np.concatenate([_cut_short(*pair) for pair in zip(played, pieces)]) if pieces else np.zeros(0)
    durations = np.concatenate([piece["duration"] for piece in pieces])
    ratios = np.concatenate([legato_ratios(piece) for piece in pieces])
    return {
        "short_note_fraction": round(float(np.mean(durations < SHORT_NOTE_SECONDS)), 4),
        "staccato_fraction": round(float(np.mean(ratios < LEGATO_EDGES[0])), 4),
        "median_duration": round(float(np.median(durations)), 4),
        "polyphony_over_time": round(float(np.mean([polyphony_over_time(p) for p in pieces])), 3),
        "top_line_repeats": round(float(np.mean([top_line_repeats(p) for p in pieces])), 4),
        "bass_line_repeats": round(float(np.mean([bass_line_repeats(p) for p in pieces])), 4),
        "motif_recurrence": round(float(np.mean([motif_recurrence(p) for p in pieces])), 4),
        "cut_by_restrike_fraction": round(float(cut_short.mean()) if len(cut_short) else 0.0, 4),
    }


# A share of under 1/16 legato is nearly always 0 in a real excerpt, so as a per-piece feature its
# overlap is noise; the legato histogram carries it, and texture_figures reports it pooled.
TEXTURE_SCALARS = {
    "short_note_fraction": short_note_fraction,
    "median_duration": median_duration,
    "polyphony_over_time": polyphony_over_time,
    "velocity_pitch_correlation": velocity_pitch_correlation,
    "phrase_dynamics": phrase_dynamics,
    "top_line_repeats": top_line_repeats,
    "motif_recurrence": motif_recurrence,
}
TEXTURE_VECTORS = {
    "legato_histogram": legato_histogram,
    "top_line_intervals": top_line_intervals,
    "bass_line_intervals": bass_line_intervals,
}

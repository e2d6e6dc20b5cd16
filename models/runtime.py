"""Sample notes from B independent streams of an exported model (its graph: models/graph.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.config import FIELD_ORDER, ZERO_BIN_LIMIT_SECONDS, Bins, ModelConfig
from models.bass import ABOVE_ALL, ChordBass
from models.echo import NO_PITCH, TopLineEcho
from models.intervals import StreamChordTops
from models.lines import LineTables, interval_class
from models.span import RecentSpan
from models.controls import CONTROL_SIZE
from models.graph import HEADS, TFLiteStep, load_step, read_card
from models.notes import CHORD_SECONDS, NOTE_DTYPE, make_notes

DEFAULT_MODEL_DIR = Path(__file__).parent / "default"
# The note a score continues from (a fixed one, so a score does not depend on a draw), and a
# stream of a model whose card has no start notes: middle C, a quarter second, mezzo-forte.
START_NOTE = (60, 0.0, 0.25, 80)
_FIXED_START = np.array([START_NOTE], dtype=NOTE_DTYPE)


def start_table(card: dict) -> np.ndarray | None:
    """The card's `start_notes` as NOTE_DTYPE [N] (real notes of the training data), or None."""
    rows = np.asarray(card.get("start_notes") or [], np.float64).reshape(-1, 4)
    return make_notes(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]) if len(rows) else None


SHORTEST_NOTE_SECONDS = 0.8 * ZERO_BIN_LIMIT_SECONDS
NO_TOP_P = 2.0  # a nucleus above 1 keeps every category
# A piano key cannot sound again this soon after it was struck: in MAESTRO 0.02 % of notes come
# within 50 ms of the last strike of their key (none within 20 ms). The network, trained one note
# at a time, puts a few per cent of its mass there (a key doubled inside a chord, a flutter), and
# each such note cuts the one before it to a peck. `sample` draws those again (see _redraw_restrikes).
MIN_RESTRIKE_SECONDS = 0.05
RESTRIKE_REDRAWS = 8
TILT_REDRAWS = 8  # draws of a note the pitch weights do not keep, before it is kept as drawn
# An echo (a figure's next step, see models/echo.py) is played only where the network gives it at
# least this probability after the step drawn: a figure goes on where the music lets it. Chosen on
# validation (0.01 / 0.02 / 0.05: motif recurrence 0.17 / 0.17 / 0.13 of 400 notes).
ECHO_PLAUSIBLE = 0.02


class Runtime:
    """B independent note streams over one exported step graph.

    Every call of the graph plays one note per stream: `sample` draws it (fields in FIELD_ORDER,
    each conditioned on the ones before), `feed` forces a known note instead (a primer, what a
    player played) and `score` forces whole pieces. All three return the log-probability of each
    field, so what was drawn can be scored exactly. Controls (models/controls.py) steer every
    note drawn after they are set.
    """

    def __init__(self, model_dir: Path | str | None = None, backend: str = "auto", batch: int = 1, seed: int | None = None):
        self.model_dir = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
        self.card = read_card(self.model_dir)
        self.config = ModelConfig.from_dict(self.card["config"])
        self.bins = Bins(self.config)
        self.step_function = load_step(self.model_dir, backend, self.card)
        self.backend = "tflite" if isinstance(self.step_function, TFLiteStep) else "savedmodel"
        self.rng = np.random.default_rng(seed)
        self.min_restrike_seconds = MIN_RESTRIKE_SECONDS
        self._part_step = None  # loaded when a redraw first needs it
        self._start_table = start_table(self.card)
        # The lengths the top duration bin stands for (Bins.top_bin_tail); cards before it: none.
        self.duration_tail = self.card.get("duration_tail", {}).get("seconds")
        self.line_tables = LineTables.from_card(self.card)  # None: a card without them, no line tilt
        self.reset(batch)

    @property
    def rng(self) -> np.random.Generator:
        """The streams' random draws. Setting it also sets where each note's length lies within its
        bin (notes_from_bins): a stream of its own, spawned from it, so the draws stay as they were."""
        return self._rng

    @rng.setter
    def rng(self, generator: np.random.Generator) -> None:
        self._rng = generator
        self._length_rng = generator.spawn(1)[0]

    def reset(self, batch: int | None = None, start=None) -> None:
        """Forget everything: zero state, no controls. Each stream continues from a start note:
        `start` (NOTE_DTYPE, one or [B]) if given, else one drawn from the card's (see start_notes)."""
        self.batch = batch or self.batch
        self.state = np.zeros((self.batch, *self.card["state_shape"]), dtype=np.float32)
        # With memory: the ring of remembered notes (models/memory.py), written one row a note.
        shape = self.card.get("memory_shape")
        self.memory = np.zeros((self.batch, *shape), dtype=np.float32) if shape else None
        self.controls = np.zeros((self.batch, CONTROL_SIZE), np.float32)
        self.start_notes = self._start_notes(start)
        self.previous = {name: values.astype(np.int32) for name, values in self.bins.encode(self.start_notes).items()}
        self.since_struck = np.full((self.batch, 128), np.inf)  # seconds since each key was last struck
        self.echo = TopLineEcho(self.batch)  # each stream's top line (its chord_top: the last chord's highest pitch)
        self.bass = ChordBass(self.batch)
        self.span = RecentSpan(self.batch)
        # With an interval bias, the graph also takes where each stream's line is (models/intervals.py).
        self.chord_tops = StreamChordTops(self.start_notes["pitch"]) if self.config.interval_bias else None
        # With mask_sounding_keys: seconds each key still sounds after the last onset [B, 128].
        self.sounding = np.zeros((self.batch, 128), np.float32) if self.config.mask_sounding_keys else None

    def _start_notes(self, start) -> np.ndarray:
        """The note before each stream's first [B]. Training begins every window at a real note of a
        random piece with a zero state, so a fresh stream does too: a note drawn from the card's
        `start_notes` (real notes of the training data). One fixed note (START_NOTE, velocity 80)
        set every stream off loud, and it stayed loud for hundreds of notes."""
        if start is None:
            table = self._start_table
            start = _FIXED_START if table is None else table[self.rng.integers(0, len(table), self.batch)]
        return np.broadcast_to(np.asarray(start, dtype=NOTE_DTYPE).reshape(-1), (self.batch,)).copy()

    def set_controls(self, vectors: np.ndarray) -> None:
        """Controls for the notes drawn from now on: one vector [CONTROL_SIZE] for all streams, or [B, CONTROL_SIZE]."""
        self.controls = np.ascontiguousarray(np.broadcast_to(np.asarray(vectors, np.float32), self.controls.shape))

    def _play(self, forced: np.ndarray, temperature: np.ndarray, top_p: np.ndarray) -> dict:
        """One graph call: returns {field: bins [B]} and "log_prob" [B, 4]; advances the state."""
        outputs = self.step_function({
            **self._inputs(), "temperature": temperature,
            "top_p": top_p, "uniform": self.rng.random((self.batch, len(FIELD_ORDER)), dtype=np.float32),
            "forced": forced,
        })
        self._advance(outputs)
        self.previous = {name: outputs[name].astype(np.int32) for name in HEADS}
        return outputs

    def _inputs(self) -> dict:
        """The graph's inputs that carry the streams: the previous note, state, controls (and memory)."""
        inputs = {**self.previous, "state": self.state, "controls": self.controls}
        if self.memory is not None:
            inputs["memory"] = self.memory
        if self.chord_tops is not None:
            inputs["chord_tops"] = self.chord_tops.tops
        if self.sounding is not None:
            inputs["sounding"] = self.sounding
        return inputs

    def _advance(self, outputs: dict) -> None:
        """The new state; with memory, this note's row written into each stream's ring at its count."""
        if self.memory is not None:
            count = self.state[:, -1, 0].astype(np.int64)  # the notes each stream has played before this one
            self.memory[np.arange(self.batch), count % self.memory.shape[1]] = outputs["memory_row"]
        self.state = outputs["state"]

    def _strike(self, notes: np.ndarray) -> None:
        """Keep time since each key's last strike: every stream moves on by its note's step."""
        pitch = notes["pitch"].astype(np.int64)
        self.since_struck += notes["step"][:, None]
        self.since_struck[np.arange(self.batch), pitch] = 0.0
        self.echo.strike(pitch, notes["step"])
        self.bass.strike(pitch, notes["step"])
        self.span.strike(pitch)
        if self.chord_tops is not None:
            self.chord_tops.strike(pitch, notes["step"])
        if self.sounding is not None:
            self.sounding = np.maximum(self.sounding - notes["step"][:, None], 0.0).astype(np.float32)
            self.sounding[np.arange(self.batch), pitch] = notes["duration"]

    def _forced(self, notes: np.ndarray) -> np.ndarray:
        encoded = self.bins.encode(notes)
        return np.stack([encoded[name] for name in FIELD_ORDER], axis=1).astype(np.int32)

    def feed(self, notes: np.ndarray) -> dict:
        """Advance every stream by one given note (NOTE_DTYPE, shape [B]); its log-probability per field [B].

        `last_most_likely` then holds each field's most likely bin given the note's earlier fields.
        """
        ones = np.ones((self.batch, len(FIELD_ORDER)), np.float32)
        outputs = self._play(self._forced(notes), ones, np.full((self.batch, len(FIELD_ORDER)), NO_TOP_P, np.float32))
        self._strike(notes)
        self.last_most_likely = {name: outputs["most_likely"][:, column] for column, name in enumerate(FIELD_ORDER)}
        return {name: outputs["log_prob"][:, column] for column, name in enumerate(FIELD_ORDER)}

    def prime(self, notes: np.ndarray) -> None:
        """Feed a note sequence to set the model's state: [T] the same for every stream, or [B, T] one each."""
        notes = np.asarray(notes)
        for position in range(notes.shape[-1]):
            self.feed(notes[:, position] if notes.ndim == 2 else np.repeat(notes[position][None], self.batch))

    def sample(self, temperature=1.0, top_p: float | None = None, head_temperature: dict | None = None,
               top_p_fields=FIELD_ORDER, pitch_weights: np.ndarray | None = None, top_repeat: float = 1.0,
               echo: float = 0.0, bass_repeat: float = 1.0, line_tilt: float = 0.0, chord_join: float = 1.0,
               span_hold: float = 0.0) -> np.ndarray:
        """Draw the next note of every stream (NOTE_DTYPE, shape [B]); it becomes the streams' context.

        `temperature` (scalar or [B]) applies to every field, `head_temperature` overrides it per
        field, e.g. {"step": 0.5}. The nucleus `top_p` applies to the fields in `top_p_fields`
        (e.g. ("pitch",): a clear key without cutting the long tail of lengths). `pitch_weights`
        ([128] or [B, 128], each 0-1) tilt the pitch: notes are drawn from the network's
        distribution times them (a register to keep to: models.sampling.register_weights);
        `top_repeat` (0-1) times the probability of a chord that starts on the last chord's top
        note (the top line striking its last note again), `bass_repeat` the same for a note that
        would strike the last chord's lowest note again as its own chord's lowest (the bass line
        striking its last note again: models/bass.py). `line_tilt` (0: off, 1: full) draws the top
        and bass lines' intervals nearer the data's (models/lines.py; the card's tables), and
        `chord_join` times the probability of a note that joins the chord being played (below 1:
        fewer notes struck together). `span_hold` (semitones; 0: off) keeps e^(-d / span_hold) of the
        probability of a pitch d semitones beyond the span of the stream's last notes
        (models/span.py), for a stream whose `pitch_weights` keep to no register. `echo` (0-1):
        the chance that a note that could carry on a figure its top line played before
        (models/echo.py) is offered that pitch, taken where the network finds it plausible. The
        log-probabilities the draws used (before any tilt) are in `last_log_prob`.
        """
        temperatures = {name: temperature for name in HEADS} | (head_temperature or {})
        temperature_matrix = np.empty((self.batch, len(FIELD_ORDER)), np.float32)
        for column, name in enumerate(FIELD_ORDER):  # a scalar or one per stream ([B])
            temperature_matrix[:, column] = np.asarray(temperatures[name], np.float32)
        if not np.all(temperature_matrix > 0) or not np.all(np.isfinite(temperature_matrix)):
            raise ValueError("temperature must be a finite number > 0")
        value = NO_TOP_P if top_p is None or top_p >= 1.0 else float(top_p)
        nucleus = np.array([[value if name in top_p_fields else NO_TOP_P for name in FIELD_ORDER]] * self.batch, np.float32)
        inputs = self._inputs()
        outputs = self._draw(self.step_function, inputs, np.full((self.batch, len(FIELD_ORDER)), -1, np.int32),
                             temperature_matrix, nucleus)
        self._advance(outputs)
        if echo > 0:
            self._offer_echo(outputs, inputs, temperature_matrix, nucleus, echo)
        outputs = self._redraw_restrikes(outputs, inputs, temperature_matrix, nucleus)
        line_tilt = line_tilt if self.line_tables is not None else 0.0
        pitch_weights = self._hold_span(pitch_weights, span_hold)
        if pitch_weights is not None or min(top_repeat, bass_repeat, chord_join) < 1.0 or line_tilt > 0:
            outputs = self._tilt(outputs, inputs, temperature_matrix, nucleus, pitch_weights, top_repeat, bass_repeat,
                                 line_tilt, chord_join)
        self.previous = {name: outputs[name].astype(np.int32) for name in HEADS}
        self.last_log_prob = {name: outputs["log_prob"][:, column] for column, name in enumerate(FIELD_ORDER)}
        notes = self.notes_from_bins(outputs)
        self._strike(notes)
        return notes

    def _hold_span(self, pitch_weights: np.ndarray | None, span_hold: float) -> np.ndarray | None:
        """The pitch weights with the span hold's on those of streams that keep to no register (their
        weights all 1). A register, asked for or an answer's (the call's own), already keeps the
        notes where they belong: on top of it the span of the call held answers narrower than the
        pianists' (continuation coherence, 400 test calls, seeds 0-2: 0.938 / 0.932 / 0.948 with
        it, 0.955 / 0.960 / 0.964 without)."""
        span = self.span.weights(span_hold) if span_hold > 0 else None
        if span is None:
            return pitch_weights
        if pitch_weights is None:
            return span
        weights = np.broadcast_to(np.asarray(pitch_weights, np.float64), span.shape)
        free = np.all(weights >= 1.0, axis=1)
        return np.where(free[:, None], span * weights, weights)

    def _draw(self, step_function, inputs: dict, forced: np.ndarray, temperature: np.ndarray, nucleus: np.ndarray) -> dict:
        """The fields not `forced` [B, 4], drawn in FIELD_ORDER with a temperature and a nucleus per field [B, 4]: one graph call."""
        result = step_function({**inputs, "temperature": temperature, "top_p": nucleus, "forced": forced,
                                "uniform": self.rng.random(forced.shape, dtype=np.float32)})
        return {name: np.array(value) for name, value in result.items()}

    def _offer_echo(self, outputs: dict, inputs: dict, temperature: np.ndarray, nucleus: np.ndarray, echo: float) -> None:
        """With chance `echo`, a stream whose note could carry a figure on draws it again with that
        pitch (its step kept); the note is kept where the network gives the pitch ECHO_PLAUSIBLE
        or more, the first draw elsewhere. In place, in `outputs`."""
        targets = self.echo.targets(self.bins.bin_to_time(outputs["step"]))
        rows = np.flatnonzero((targets != NO_PITCH) & (targets != outputs["pitch"]) & (self.rng.random(self.batch) < echo))
        if not len(rows):
            return
        forced = np.full((len(rows), len(FIELD_ORDER)), -1, np.int32)
        forced[:, FIELD_ORDER.index("step")] = outputs["step"][rows]
        forced[:, FIELD_ORDER.index("pitch")] = targets[rows]
        unmasked = {name: value[rows] for name, value in inputs.items()}
        if "sounding" in unmasked:
            unmasked["sounding"] = np.zeros_like(unmasked["sounding"])
        again = self._draw(self._step_for(len(rows)), unmasked, forced, temperature[rows], nucleus[rows])
        plausible = again["log_prob"][:, FIELD_ORDER.index("pitch")] >= np.log(ECHO_PLAUSIBLE)
        for name in (*HEADS, "log_prob", "most_likely"):
            outputs[name][rows[plausible]] = again[name][plausible]
        self.echo.took(rows[plausible])

    def _restruck_too_soon(self, drawn: dict) -> np.ndarray:
        """[B] booleans: would the drawn note strike its key within min_restrike_seconds of the last strike?"""
        since = self.since_struck[np.arange(self.batch), drawn["pitch"].astype(np.int64)]
        return since + self.bins.bin_to_time(drawn["step"]) < self.min_restrike_seconds

    def _redraw_restrikes(self, outputs: dict, inputs: dict, temperature: np.ndarray, nucleus: np.ndarray) -> dict:
        """Draw again, from the same state and step, the notes that would strike a key too soon.

        Only those streams are run again (from the `inputs` of the call): they keep their step
        and draw pitch, duration and velocity anew, the network's own distribution given that
        the key is free. Where RESTRIKE_REDRAWS tries all strike it again (the network all but
        sure of that key after that step: 3 notes in 9,600 of the model shipped in December), as
        many more draw the whole note, its step too, so a later step can free the key. A note
        that still strikes it too soon (1 in 10,000 at temperature 1; every one at very low
        temperatures) waits: its step becomes the shortest that frees the key.
        """
        for attempt in range(2 * RESTRIKE_REDRAWS):
            rows = np.flatnonzero(self._restruck_too_soon(outputs))
            if not len(rows):
                break
            forced = np.full((len(rows), len(FIELD_ORDER)), -1, np.int32)
            if attempt < RESTRIKE_REDRAWS:
                forced[:, FIELD_ORDER.index("step")] = outputs["step"][rows]
            self._draw_again(outputs, inputs, rows, forced, temperature, nucleus)
        rows = np.flatnonzero(self._restruck_too_soon(outputs))
        if len(rows):
            since = self.since_struck[rows, outputs["pitch"][rows].astype(np.int64)]
            outputs["step"][rows] = np.searchsorted(self.bins.time_centers, self.min_restrike_seconds - since - 1e-9)
        return outputs

    def _draw_again(self, outputs: dict, inputs: dict, rows: np.ndarray, forced: np.ndarray, temperature: np.ndarray,
                    nucleus: np.ndarray) -> None:
        """Draw the notes of streams `rows` again from the same `inputs` (state and step), `forced`
        [rows, 4] as in _draw, into `outputs` in place; only those streams are run."""
        again = self._draw(self._step_for(len(rows)), {name: value[rows] for name, value in inputs.items()},
                           forced, temperature[rows], nucleus[rows])
        for name in (*HEADS, "log_prob", "most_likely"):
            outputs[name][rows] = again[name]

    def _tilt(self, outputs: dict, inputs: dict, temperature: np.ndarray, nucleus: np.ndarray,
              pitch_weights: np.ndarray | None, top_repeat: float, bass_repeat: float = 1.0, line_tilt: float = 0.0,
              chord_join: float = 1.0) -> dict:
        """Draws from the network's distribution times an acceptance, by rejection: a note is kept
        with its acceptance, else drawn again from the same state (the graph draws; only the
        rejected streams are run again). The acceptance is its pitch's weight, times `top_repeat`
        where it starts a chord on the last chord's top note, times `bass_repeat` where it strikes
        the last chord's lowest note again as its own chord's lowest, times the line tables' share
        (raised to `line_tilt`) where it starts a chord, times `chord_join` where it joins one. A
        rejected note is drawn whole again, but for a bass struck again (with `bass_repeat` below 1)
        and a note the line tables turned away: it keeps its step and draws the rest, so the tilt
        corrects the pitch given the step (where the network errs: models/bass.py) and leaves the
        pace alone. After TILT_REDRAWS tries a note is kept as
        drawn: a weight far below 1 on everything the network would play is a request it cannot
        meet, and the stream must not stall on it."""
        weights = np.broadcast_to(np.asarray(1.0 if pitch_weights is None else pitch_weights, np.float64), (self.batch, 128))
        # Only the notes drawn again are judged again: a note once kept is final. (Judged again,
        # a kept note met its acceptance once per round that any stream of the batch needed, so a
        # batch drew far fewer such notes than one stream does: top_repeat 0.5 kept under 0.1.)
        rows = np.arange(self.batch)
        for _ in range(TILT_REDRAWS):
            pitch = outputs["pitch"][rows].astype(np.int64)
            step_seconds = self.bins.bin_to_time(outputs["step"][rows])
            starts = step_seconds >= CHORD_SECONDS
            repeats_top = starts & (pitch == self.echo.chord_top[rows])
            repeats_bass = self.bass.repeats(rows, pitch, step_seconds)
            lines = self._line_acceptance(rows, pitch, starts, line_tilt)
            acceptance = (weights[rows, pitch] * np.where(repeats_top, top_repeat, 1.0)
                          * np.where(repeats_bass, bass_repeat, 1.0) * lines * np.where(starts, 1.0, chord_join))
            rejected = self.rng.random(len(rows)) >= acceptance
            # A bass struck again keeps its step, a one-note chord struck again (both lines repeat) too;
            # with bass_repeat 1 nothing changes (the top line's notes are drawn whole, as they were).
            keep_step = (repeats_bass & (bass_repeat < 1.0)) | (lines < 1.0)
            rows, keep_step = rows[rejected], keep_step[rejected]
            if not len(rows):
                break
            # A figure's note turned away leaves its place as the echo's (spared the line tilt, counted
            # toward the figure's run): judged as an ordinary note instead, validation's AUC rose
            # 0.859 -> 0.874 (4 x 8 tests).
            forced = np.full((len(rows), len(FIELD_ORDER)), -1, np.int32)
            forced[keep_step, FIELD_ORDER.index("step")] = outputs["step"][rows[keep_step]]
            self._draw_again(outputs, inputs, rows, forced, temperature, nucleus)
            outputs = self._redraw_restrikes(outputs, inputs, temperature, nucleus)
        return outputs

    def _line_acceptance(self, rows: np.ndarray, pitch: np.ndarray, starts: np.ndarray, line_tilt: float) -> np.ndarray:
        """[len(rows)] the share the line tables leave a note of streams `rows` (1 where they do not
        judge it: off, a note that joins a chord, a stream's first chord, a figure the echo offered)."""
        if line_tilt <= 0 or self.line_tables is None:
            return np.ones(len(rows))
        last_top, last_lowest = self.echo.chord_top[rows], self.bass.chord_lowest[rows]
        judged = starts & (last_top != NO_PITCH) & (last_lowest != ABOVE_ALL) & ~self.echo.pending[rows]
        shares = self.line_tables.acceptance(line_tilt, interval_class(pitch, last_top), interval_class(pitch, last_lowest))
        return np.where(judged, shares, 1.0)

    def _step_for(self, rows: int):
        """The step function for a call on `rows` streams: a TFLite interpreter of its own for a part
        of the batch, so the main one keeps its tensors sized for the whole batch."""
        if rows == self.batch or self.backend != "tflite":
            return self.step_function
        if self._part_step is None:
            self._part_step = load_step(self.model_dir, "tflite", self.card)
        return self._part_step

    def notes_from_bins(self, bins: dict) -> np.ndarray:
        """NOTE_DTYPE notes [B] from bins per field; each note reads back as the same bins (its length
        anywhere within its bin)."""
        notes = np.zeros(len(bins["pitch"]), dtype=NOTE_DTYPE)
        notes["pitch"] = bins["pitch"]
        notes["step"] = self.bins.bin_to_time(bins["step"])
        # A length anywhere in its bin, not at its centre: the bin's centre put a bin's worth of lengths
        # on one value (the bin of 30.4-33.5 ms all on 31.9 ms, under the 32 ms a short note is counted
        # below; MAESTRO test's notes, binned and decoded at the centres: 2.4 % under 32 ms, against
        # 1.8 % as played). Steps stay on their centres: the chords and the graph read them so.
        # Duration bin 0 is "under ZERO_BIN_LIMIT_SECONDS": a note must still sound, for a moment.
        within = self.bins.time_within_bin(bins["duration"], self._length_rng.random(len(notes)), self.duration_tail)
        notes["duration"] = np.maximum(within, SHORTEST_NOTE_SECONDS)
        notes["velocity"] = self.bins.bin_to_velocity(bins["velocity"])
        return notes

    def score(self, notes: np.ndarray, lengths=None, controls: np.ndarray | None = None, start=None) -> dict:
        """Natural-log probability of every field of every note, one stateful pass per piece.

        `notes`: NOTE_DTYPE [B, T], B padded pieces; `lengths` [B] (default: all T). Returns
        {field: [B, T]} at temperature 1 with no nucleus, each field given all earlier notes and the
        fields drawn before it; positions past a piece's length are 0. Resets the runtime to B
        streams (with `controls` [CONTROL_SIZE] or [B, CONTROL_SIZE] if given, else none), each
        continuing from `start` (NOTE_DTYPE, one or [B]; default START_NOTE).
        """
        return self.score_with_pitch_hits(notes, lengths, controls, start)[0]

    def score_with_pitch_hits(self, notes: np.ndarray, lengths=None, controls: np.ndarray | None = None, start=None):
        """`score`, and also [B, T] booleans: was the true pitch the most likely one (given its step)?"""
        notes = np.asarray(notes)
        count, length = notes.shape
        lengths = np.full(count, length) if lengths is None else np.asarray(lengths)
        self.reset(count, _FIXED_START if start is None else start)
        if controls is not None:
            self.set_controls(controls)
        scores = {name: np.zeros((count, length), np.float64) for name in FIELD_ORDER}
        hits = np.zeros((count, length), bool)
        for position in range(int(lengths.max(initial=0))):
            inside = position < lengths
            for name, values in self.feed(notes[:, position]).items():
                scores[name][:, position] = np.where(inside, values, 0.0)
            hits[:, position] = inside & (self.last_most_likely["pitch"] == notes["pitch"][:, position])
        return scores, hits

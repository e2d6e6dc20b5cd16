"""Generate sets at shipped sampling and save them, plus real excerpts."""
import os, sys, json, numpy as np
from pathlib import Path
sys.path.insert(0, os.environ.get("CADENZA_SRC", "/work/main"))
import os, functools
import models.echo as echo_mod, models.runtime as rt_mod
if os.environ.get("ECHO_INTERVALS"):
    echo_mod.echo_targets = functools.partial(echo_mod.echo_targets, intervals=int(os.environ["ECHO_INTERVALS"]))
if os.environ.get("ECHO_PLAUSIBLE"):
    rt_mod.ECHO_PLAUSIBLE = float(os.environ["ECHO_PLAUSIBLE"])
if os.environ.get("ECHO_RUN"):
    echo_mod.ECHO_RUN = int(os.environ["ECHO_RUN"])
from models.runtime import Runtime
if os.environ.get("HELD_MARGIN"):
    import numpy as _np
    from models.runtime import FIELD_ORDER as _FO
    MARGIN = float(os.environ["HELD_MARGIN"]); TRIES = int(os.environ.get("HELD_TRIES", "8"))
    _orig_strike = Runtime._strike
    def _strike(self, notes):
        if not hasattr(self, "held_for"):
            self.held_for = _np.zeros((self.batch, 128))
        self.held_for -= notes["step"][:, None]
        self.held_for[_np.arange(self.batch), notes["pitch"].astype(_np.int64)] = notes["duration"]
        _orig_strike(self, notes)
    Runtime._strike = _strike
    _orig_redraw = Runtime._redraw_restrikes
    def _held(self, out):
        if not hasattr(self, "held_for"):
            self.held_for = _np.zeros((self.batch, 128))
        left = self.held_for[_np.arange(self.batch), out["pitch"].astype(_np.int64)] - self.bins.bin_to_time(out["step"])
        if os.environ.get("HELD_EXEMPT_ECHO"):
            return (left > MARGIN) & ~self.echo.pending
        return left > MARGIN
    def _redraw(self, outputs, inputs, temperature, nucleus):
        outputs = _orig_redraw(self, outputs, inputs, temperature, nucleus)
        if os.environ.get("HELD_MODE") == "class":
            rows = _np.flatnonzero(_held(self, outputs))
            if not len(rows): return outputs
            keep = {name: outputs[name][rows].copy() for name in ("step", "pitch", "duration", "velocity", "log_prob", "most_likely")}
            want = outputs["pitch"][rows] % 12
            done = _np.zeros(len(rows), bool)
            for attempt in range(TRIES):
                todo = rows[~done]
                if not len(todo): break
                forced = _np.full((len(todo), len(_FO)), -1, _np.int32)
                forced[:, _FO.index("step")] = outputs["step"][todo]
                self._draw_again(outputs, inputs, todo, forced, temperature, nucleus)
                ok = (outputs["pitch"][todo] % 12 == want[~done]) & ~_held(self, outputs)[todo] & ~self._restruck_too_soon(outputs)[todo]
                idx = _np.flatnonzero(~done)
                done[idx[ok]] = True
            bad = rows[~done]
            for name, values in keep.items():
                outputs[name][bad] = values[~done]
            return outputs
        for attempt in range(TRIES):
            rows = _np.flatnonzero(_held(self, outputs))
            if not len(rows): break
            forced = _np.full((len(rows), len(_FO)), -1, _np.int32)
            forced[:, _FO.index("step")] = outputs["step"][rows]
            self._draw_again(outputs, inputs, rows, forced, temperature, nucleus)
            outputs = _orig_redraw(self, outputs, inputs, temperature, nucleus)
        return outputs
    Runtime._redraw_restrikes = _redraw
if os.environ.get("DUR_TILT"):
    import numpy as _np
    from models.runtime import FIELD_ORDER as _FO
    _r, _edge = (float(v) for v in os.environ["DUR_TILT"].split(","))
    _orig_redraw2 = Runtime._redraw_restrikes
    def _redraw2(self, outputs, inputs, temperature, nucleus):
        outputs = _orig_redraw2(self, outputs, inputs, temperature, nucleus)
        rows = _np.arange(self.batch)
        for attempt in range(8):
            secs = self.bins.bin_to_time(outputs["duration"][rows]) if hasattr(self.bins, "bin_to_time") else None
            acc = _np.where(self.bins.time_centers[outputs["duration"][rows]] < _edge, _r, 1.0)
            rows = rows[self.rng.random(len(rows)) >= acc]
            if not len(rows): break
            forced = _np.full((len(rows), len(_FO)), -1, _np.int32)
            forced[:, _FO.index("step")] = outputs["step"][rows]
            forced[:, _FO.index("pitch")] = outputs["pitch"][rows]
            self._draw_again(outputs, inputs, rows, forced, temperature, nucleus)
        return outputs
    Runtime._redraw_restrikes = _redraw2
from models.sampling import Sampling
from training.style import real_excerpts, generate_pieces
from training.prepare import load_split
split = sys.argv[1]; seeds = [int(s) for s in sys.argv[2].split(",")]
model = sys.argv[3] if len(sys.argv) > 3 else "/work/main/models/default"
tag = sys.argv[4] if len(sys.argv) > 4 else "ship"
overrides = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
card = json.loads(Path(model, "card.json").read_text())
sampling = Sampling.from_card(card, **overrides)
rt = Runtime(model, seed=0)
out = Path("/tmp/d")
for seed in seeds:
    rt.rng = np.random.default_rng(seed)
    pieces = generate_pieces(rt, sampling, 160, 400)
    np.save(out / f"gen_{tag}_{split}_{seed}.npy", np.stack(list(pieces)))
    print("done", seed, flush=True)

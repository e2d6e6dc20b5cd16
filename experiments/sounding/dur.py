import sys, numpy as np
sys.path.insert(0, "/work/main")
from training.style import real_excerpts
from training.prepare import load_split
from training.texture import heard
from training.features import NOTE_LENGTH_EDGES
from pathlib import Path
split=sys.argv[1]; tag=sys.argv[2]
real = real_excerpts(load_split(Path("/work/main/data/maestro"), split), 160, 400, 0)
gen = list(np.load(f"/tmp/d/gen_{tag}_{split}_0.npy"))
def h(xs, f):
    d = np.concatenate([f(x)["duration"] for x in xs]); return np.bincount(np.searchsorted(NOTE_LENGTH_EDGES, d), minlength=12)/len(d)
np.set_printoptions(precision=3, suppress=True)
print("edges", NOTE_LENGTH_EDGES)
print("real raw  ", h(real.notes, lambda x: x)); print("gen raw   ", h(gen, lambda x: x))
print("real heard", h(real.notes, heard)); print("gen heard ", h(gen, heard))

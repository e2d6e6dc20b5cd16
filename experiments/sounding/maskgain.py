import numpy as np, json
from dataclasses import replace
from pathlib import Path
from models.config import ModelConfig
from models.network import build_model, compile_model
from training.prepare import load_split
from training.windows import WindowSampler
from training.warm_start import load_exported_weights
saved = json.loads(Path("/work/runs/s14/sounding/config.json").read_text())["model"]
config = ModelConfig.from_dict(saved)
model = build_model(config); compile_model(model, config)
load_exported_weights(model, config, Path("/work/main/models/default"))
sampler = WindowSampler(load_split(Path("/work/main/data/maestro"), "validation"), config)
rng = np.random.default_rng(12345)
losses = {"masked": [], "unmasked": []}; mass = []
for i in range(4):
    x, y = sampler.batch(64, rng, augment=False, dropout=1.0)
    out = model.predict(x | {"sounding": np.zeros_like(x["sounding"])}, verbose=0, batch_size=64)
    logits = out["pitch"].astype(np.float64)
    logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    p = np.exp(logp)
    m = x["sounding"].astype(bool)
    mass.append((p * m).sum(-1).ravel())
    target = np.take_along_axis(logp, y["pitch"][..., None].astype(int), -1)[..., 0]
    masked_norm = np.log(np.maximum(1 - (p * m).sum(-1), 1e-12))
    losses["unmasked"].append(-target.ravel()); losses["masked"].append(-(target - masked_norm).ravel())
mass = np.concatenate(mass)
print("pitch NLL unmasked %.4f masked %.4f" % (np.concatenate(losses["unmasked"]).mean(), np.concatenate(losses["masked"]).mean()))
print("probability on sounding keys: mean %.3f median %.3f share of positions >0.5: %.3f" % (mass.mean(), np.median(mass), (mass > 0.5).mean()))

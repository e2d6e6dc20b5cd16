import sys, numpy as np
sys.path.insert(0, "/work/main")
from training.style import real_excerpts
from training.prepare import load_split
from training.features import feature_table, SCALAR_FEATURES, VECTOR_FEATURES
from training.two_sample import classifier_test, feature_matrix
from pathlib import Path
from sklearn.metrics import roc_auc_score
split = sys.argv[1]; tag = sys.argv[2]; seeds = [int(s) for s in sys.argv[3].split(",")]
only = sys.argv[4].split(",") if len(sys.argv) > 4 and sys.argv[4] else None
real = real_excerpts(load_split(Path("/work/main/data/maestro"), split), 160, 400, 0)
rt = feature_table(real.notes)
aucs = []; imp = {}
singles = {}
for seed in seeds:
    gen = np.load(f"/tmp/d/gen_{tag}_{split}_{seed}.npy")
    gt = feature_table(list(gen))
    if only:
        rtt = {k: rt[k] for k in rt}; 
    res = classifier_test(rt, gt, real.pieces, np.arange(len(gen)), seed)
    aucs.append(res["auc"])
    for s in res["separating"]: imp[s["feature"]] = imp.get(s["feature"], 0) + s["importance"] / len(seeds)
    if seed == seeds[0]:
        A, names = feature_matrix(rt); B, _ = feature_matrix(gt)
        for j, n in enumerate(names):
            y = np.r_[np.zeros(len(A)), np.ones(len(B))]; x = np.r_[A[:, j], B[:, j]]
            a = roc_auc_score(y, x); a = max(a, 1 - a)
            singles.setdefault(n, []).append((a, j, A[:, j].mean(), B[:, j].mean()))
print("AUCs", aucs, "mean", round(np.mean(aucs), 4))
print({k: round(v, 3) for k, v in sorted(imp.items(), key=lambda x: -x[1])})
allcols = sorted([(a, n, j, ma, mb) for n, l in singles.items() for a, j, ma, mb in l], reverse=True)[:25]
for a, n, j, ma, mb in allcols: print(f"{a:.3f} {n} col{j} real {ma:.4f} gen {mb:.4f}")

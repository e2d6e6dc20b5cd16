import sys, numpy as np
sys.path.insert(0, "/work/main")
from training.style import real_excerpts
from training.prepare import load_split
from training.texture import heard, top_line, bass_line, chord_groups
from pathlib import Path
split=sys.argv[1]; tag=sys.argv[2] if len(sys.argv)>2 else "ship"
real = real_excerpts(load_split(Path("/work/main/data/maestro"), split), 160, 400, 0)
gen = [heard(g) for g in np.load(f"/tmp/d/gen_{tag}_{split}_0.npy")]
rl = [heard(r) for r in real.notes]
def cls(i):
    a=abs(i); return "0" if a==0 else "1-2" if a<=2 else "3-4" if a<=4 else "5-7" if a<=7 else "8-11" if a<=11 else "12+"
names=["0","1-2","3-4","5-7","8-11","12+"]
def tab(xs):
    out={}
    for x in xs:
        g=chord_groups(x); sz=np.bincount(g); tl=top_line(x); bl=bass_line(x)
        d=np.diff(tl); db=np.diff(bl)
        for k in range(len(d)):
            key=("1" if sz[k]==1 else "C")+">"+("1" if sz[k+1]==1 else "C")
            out.setdefault(key,[]).append((d[k], db[k], tl[k+1]-bl[k+1], tl[k]-bl[k]))
    return out
R=tab(rl); G=tab(gen)
tot_r=sum(len(v) for v in R.values()); tot_g=sum(len(v) for v in G.values())
for key in ["1>1","1>C","C>1","C>C"]:
    r=np.array(R[key]); g=np.array(G[key])
    def h(col,arr): 
        c=[cls(v) for v in arr[:,col]]; return " ".join(f"{np.mean([x==n for x in c]):.2f}" for n in names)
    print(f"{key}: share real {len(r)/tot_r:.3f} gen {len(g)/tot_g:.3f}")
    print(f"   top  real {h(0,r)} | gen {h(0,g)}   (0,1-2,3-4,5-7,8-11,12+)")
    print(f"   bass real {h(1,r)} | gen {h(1,g)}")
    print(f"   signed top mean real {np.mean(r[:,0]):+.2f} gen {np.mean(g[:,0]):+.2f}; span after real {np.mean(r[:,2]):.1f} gen {np.mean(g[:,2]):.1f}")

"""Which piano to ship: the candidate soundfonts' Acoustic Grand Piano, rendered offline by FluidSynth.

`python -m bench.soundfonts` renders the same notes with each soundfont found and prints, per
soundfont: load time and memory, velocity layers (does the timbre brighten with velocity, or only
the level change?), the release tail after a key is let go, and the sustain of a held note; and
draws `docs/soundfont_comparison.png` (spectrograms of one C-major chord at three velocities).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from models.instruments import fallback_soundfont

SAMPLE_RATE = 44100
CANDIDATES = {
    "TimGM6mb (6 MB, the fallback)": fallback_soundfont(),
    "FluidR3 GM (fluid-soundfont-gm, 148 MB)": Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    "MuseScore General (musescore-general-soundfont, sf3, 86 MB)": Path("/usr/share/sounds/sf3/MuseScore_General_Full.sf3"),
}
VELOCITIES = (30, 60, 90, 120)
CHORD = (60, 64, 67)


class OfflineSynth:
    """FluidSynth with no audio driver: notes in, samples out (float, -1..1, mono)."""

    def __init__(self, soundfont: Path):
        import fluidsynth

        self.synth = fluidsynth.Synth(samplerate=float(SAMPLE_RATE))
        # The instrument itself: no reverb or chorus tail added on top of its own release.
        self.synth.setting("synth.reverb.active", 0)
        self.synth.setting("synth.chorus.active", 0)
        started = time.perf_counter()
        self.soundfont_id = self.synth.sfload(str(soundfont))
        self.load_seconds = time.perf_counter() - started
        if self.soundfont_id < 0:
            raise RuntimeError(f"FluidSynth cannot load {soundfont}")
        self.synth.program_select(0, self.soundfont_id, 0, 0)

    def play(self, pitches, velocity: int, hold_seconds: float, tail_seconds: float) -> np.ndarray:
        for pitch in pitches:
            self.synth.noteon(0, pitch, velocity)
        held = self._samples(hold_seconds)
        for pitch in pitches:
            self.synth.noteoff(0, pitch)
        return np.concatenate([held, self._samples(tail_seconds)])

    def _samples(self, seconds: float) -> np.ndarray:
        stereo = np.asarray(self.synth.get_samples(int(seconds * SAMPLE_RATE)), dtype=np.float64).reshape(-1, 2)
        return stereo.mean(axis=1) / 32768.0

    def close(self) -> None:
        self.synth.delete()


def _rms_db(samples: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(samples ** 2)) + 1e-12)


def _brightness_db(samples: np.ndarray) -> float:
    """Energy in 1-6 kHz over energy in 100 Hz-1 kHz (dB): a harder strike is brighter on a piano."""
    power = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    high = power[(frequencies >= 1000) & (frequencies < 6000)].sum()
    low = power[(frequencies >= 100) & (frequencies < 1000)].sum()
    return float(10 * np.log10((high + 1e-20) / (low + 1e-20)))


def _envelope_db(samples: np.ndarray, window: int = 441) -> np.ndarray:
    frames = len(samples) // window
    power = (samples[:frames * window].reshape(frames, window) ** 2).mean(axis=1)
    return 10 * np.log10(power + 1e-20)


def measure(name: str, path: Path) -> dict:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    synth = OfflineSynth(path)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        layers = []
        for velocity in VELOCITIES:
            audio = synth.play([60], velocity, hold_seconds=0.5, tail_seconds=0.5)
            attack = audio[: SAMPLE_RATE // 4]
            layers.append((velocity, _rms_db(attack), _brightness_db(attack)))
        held = synth.play([60], 90, hold_seconds=3.0, tail_seconds=2.0)
        envelope = _envelope_db(held)  # 10 ms frames
        peak = envelope[:50].max()
        sustain_drop = peak - envelope[290:300].mean()  # how much a held note has faded after 3 s
        release = envelope[300:]
        below = np.nonzero(release < peak - 60)[0]
        release_ms = (below[0] * 10) if len(below) else None
        chords = {velocity: synth.play(CHORD, velocity, hold_seconds=1.0, tail_seconds=0.5) for velocity in (40, 80, 120)}
    finally:
        synth.close()
    brightening = layers[-1][2] - layers[0][2]
    return {"name": name, "load_seconds": synth.load_seconds, "memory_mb": (rss_after - rss_before) / 1024,
            "layers": layers, "brightening": brightening, "sustain_drop_db": sustain_drop,
            "release_ms": release_ms, "chords": chords}


def draw(results: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(results), 3, figsize=(12, 3 * len(results)), sharex=True, sharey=True)
    axes = np.atleast_2d(axes)
    for row, result in enumerate(results):
        for column, (velocity, audio) in enumerate(result["chords"].items()):
            axis = axes[row, column]
            axis.specgram(audio, NFFT=2048, Fs=SAMPLE_RATE, noverlap=1536, cmap="magma", vmin=-120, vmax=-20)
            axis.set_ylim(0, 8000)
            axis.set_title(f"{result['name'].split(' (')[0]}: velocity {velocity}", fontsize=9)
            if column == 0:
                axis.set_ylabel("Hz")
            if row == len(results) - 1:
                axis.set_xlabel("seconds (key released at 1.0)")
    figure.suptitle("C-major chord (C4 E4 G4), Acoustic Grand Piano: the same notes through each soundfont")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--picture", type=Path, default=Path("docs/soundfont_comparison.png"))
    arguments = parser.parse_args(argv)
    results = []
    for name, path in CANDIDATES.items():
        if not path.is_file():
            print(f"{name}: not installed ({path})")
            continue
        result = measure(name, path)
        results.append(result)
        layers = ", ".join(f"v{v}: {db:.0f} / {bright:+.1f} dB" for v, db, bright in result["layers"])
        print(f"{name}\n  load {result['load_seconds']:.2f} s, +{result['memory_mb']:.0f} MB"
              f"\n  velocity layers (attack level / brightness, 1-6 kHz over 0.1-1 kHz): {layers}"
              f"\n  brighter from velocity 30 to 120 by {result['brightening']:+.1f} dB (0: one sample, only louder)"
              f"\n  held C4 after 3 s: {result['sustain_drop_db']:.1f} dB below its peak;"
              f" release to -60 dB: {result['release_ms'] if result['release_ms'] is not None else '> 2000'} ms")
    draw(results, arguments.picture)
    print(f"wrote {arguments.picture}")


if __name__ == "__main__":
    main()

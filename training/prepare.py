"""Ingest: MIDI files -> per-split note caches and a manifest (`cadenza prepare`)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import CadenzaError
from models.notes import CACHE_NOTE_DTYPE, MidiError, Representation, notes_from_raw
from models.midi_reader import parse_midi_bytes

SPLITS = ("train", "validation", "test")
MIDI_SUFFIXES = (".mid", ".midi")
CACHE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SourceFile:
    """One input MIDI file, its path relative to the source folder, and its split."""

    path: str
    relative: str
    split: str


def list_maestro(maestro_dir: Path) -> list[SourceFile]:
    """The MAESTRO files with the official split from the dataset's CSV."""
    import pandas

    if not maestro_dir.is_dir():
        raise CadenzaError(f"MAESTRO folder not found: {maestro_dir}")
    csv_files = sorted(maestro_dir.glob("maestro-v*.csv"))
    if not csv_files:
        raise CadenzaError(f"no maestro-v*.csv in {maestro_dir}")
    try:
        table = pandas.read_csv(csv_files[0])
    except (ValueError, UnicodeDecodeError, pandas.errors.ParserError) as error:
        raise CadenzaError(f"cannot read {csv_files[0]}: {str(error).splitlines()[0]}") from None
    missing = {"split", "midi_filename"} - set(table.columns)
    if missing:
        raise CadenzaError(f"{csv_files[0].name} lacks the columns {sorted(missing)}")
    return [
        SourceFile(str(maestro_dir / name), name, split)
        for name, split in zip(table["midi_filename"], table["split"])
    ]


def hashed_split(relative_path: str) -> str:
    """Deterministic 90/5/5 split from the file's relative path."""
    bucket = int(hashlib.sha1(relative_path.encode("utf-8")).hexdigest(), 16) % 100
    return "train" if bucket < 90 else "validation" if bucket < 95 else "test"


def list_midi_dir(midi_dir: Path) -> list[SourceFile]:
    """Every .mid/.midi file below a folder, split by hashing its relative path."""
    if not midi_dir.is_dir():
        raise CadenzaError(f"MIDI folder not found: {midi_dir}")
    files = []
    for path in sorted(midi_dir.rglob("*")):
        if path.suffix.lower() in MIDI_SUFFIXES and path.is_file():
            relative = path.relative_to(midi_dir).as_posix()
            files.append(SourceFile(str(path), relative, hashed_split(relative)))
    return files


def stat_fingerprint(files: list[SourceFile], representation: Representation) -> str:
    """Cheap identity of the inputs (names, sizes, mtimes, splits, settings) for the up-to-date check."""
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_FORMAT_VERSION, representation.to_dict()]).encode())
    for source in files:
        try:
            stat = os.stat(source.path)
            digest.update(f"{source.relative}|{source.split}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{source.relative}|missing\n".encode())
    return digest.hexdigest()


def _read_source(task: tuple[int, str, Representation]):
    """Worker: (index, notes or None, reason for skipping, sha256 of the bytes)."""
    index, path, representation = task
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        return index, None, f"unreadable: {error.strerror}", ""
    checksum = hashlib.sha256(data).hexdigest()
    try:
        notes = notes_from_raw(parse_midi_bytes(data), representation)
    except MidiError as error:
        return index, None, f"corrupt: {error}", checksum
    except Exception as error:  # a malformed file must never abort the run
        return index, None, f"corrupt: {type(error).__name__}: {error}", checksum
    if len(notes) == 0:
        return index, None, "empty: no notes", checksum
    return index, notes.astype(CACHE_NOTE_DTYPE), "", checksum


def _piece_seconds(notes: np.ndarray) -> float:
    starts = np.cumsum(notes["step"].astype(np.float64))
    return float((starts + notes["duration"]).max())


def _write_split(out: Path, split: str, pieces: list[tuple[SourceFile, np.ndarray]]) -> dict:
    notes = np.concatenate([n for _, n in pieces]) if pieces else np.zeros(0, CACHE_NOTE_DTYPE)
    offsets = np.concatenate(([0], np.cumsum([len(n) for _, n in pieces]))).astype(np.int64)
    sources = np.asarray([s.relative for s, _ in pieces], dtype=str)
    temporary = out / f".{split}.partial.npz"
    np.savez(temporary, notes=notes, offsets=offsets, sources=sources)
    os.replace(temporary, out / f"{split}.npz")
    hours = sum(_piece_seconds(n) for _, n in pieces) / 3600
    return {"pieces": len(pieces), "notes": int(len(notes)), "hours": round(hours, 3), "file": f"{split}.npz"}


def _run_workers(files, representation, workers, progress):
    from tqdm import tqdm

    tasks = [(i, f.path, representation) for i, f in enumerate(files)]
    results = [None] * len(files)
    note_count = 0
    # Workers forked from a single-threaded server process, not from this one: a fork taken while
    # any thread here holds a lock (tqdm's monitor, numpy's BLAS pool, the import machinery) can
    # leave a worker waiting on it forever. Two clean-clone runs hung that way with plain fork
    # (the second with the bar made after the fork).
    # An executor, not multiprocessing.Pool: one clean-clone run's 15-file prepare hung for good,
    # its one live worker waiting on the task queue's lock, which its other worker, gone, had held.
    # The executor watches its workers: one that dies is an error, not a hang.
    context = multiprocessing.get_context("forkserver")
    bar = tqdm(total=len(files), unit="file", disable=not progress, desc="prepare", dynamic_ncols=True)
    try:
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for index, notes, reason, checksum in pool.map(_read_source, tasks, chunksize=4):
                results[index] = (notes, reason, checksum)
                note_count += 0 if notes is None else len(notes)
                bar.update(1)
                bar.set_postfix(notes=f"{note_count:,}", refresh=False)
    except BrokenProcessPool as error:
        raise CadenzaError(f"a prepare worker died ({error}); nothing was written: run it again, "
                           "or with --workers 1") from error
    bar.close()
    return results


def prepare(files: list[SourceFile], out: Path, source_description: dict, representation: Representation,
            workers: int | None = None, progress: bool = True, force: bool = False) -> dict:
    """Parse every file in parallel, write one cache per split and manifest.json; return the manifest."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CadenzaError(f"--out {out} is a file, not a folder") from None
    except OSError as error:
        raise CadenzaError(f"cannot create {out}: {error.strerror or error}") from None
    fingerprint = stat_fingerprint(files, representation)
    manifest_path = out / "manifest.json"
    if not force and manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except (ValueError, UnicodeDecodeError):
            old = {}  # a damaged manifest only means the cache cannot be trusted: parse again
        if isinstance(old, dict) and old.get("fingerprint") == fingerprint and all((out / f"{s}.npz").exists() for s in SPLITS):
            old["up_to_date"] = True
            return old
    started = time.perf_counter()
    results = _run_workers(files, representation, workers or os.cpu_count() or 1, progress)
    inputs_digest = hashlib.sha256()
    by_split: dict[str, list] = {split: [] for split in SPLITS}
    skipped = []
    for source, (notes, reason, checksum) in zip(files, results):
        inputs_digest.update(f"{source.relative}|{source.split}|{checksum}\n".encode())
        if notes is None:
            skipped.append({"file": source.relative, "reason": reason})
        elif source.split not in by_split:
            skipped.append({"file": source.relative, "reason": f"unknown split {source.split!r}"})
        else:
            by_split[source.split].append((source, notes))
    manifest = {
        "format_version": CACHE_FORMAT_VERSION,
        "source": source_description,
        "representation": representation.to_dict(),
        "inputs_sha256": inputs_digest.hexdigest(),
        "fingerprint": fingerprint,
        "splits": {split: _write_split(out, split, pieces) for split, pieces in by_split.items()},
        "skipped": skipped,
        "files": len(files),
        "seconds": round(time.perf_counter() - started, 2),
    }
    temporary = out / ".manifest.partial.json"
    temporary.write_text(json.dumps(manifest, indent=2))
    os.replace(temporary, manifest_path)
    manifest["up_to_date"] = False
    return manifest


@dataclass
class PreparedSplit:
    """One split of the cache: all notes in one flat array, piece i is notes[offsets[i]:offsets[i+1]]."""

    notes: np.ndarray
    offsets: np.ndarray
    sources: np.ndarray

    def piece(self, index: int) -> np.ndarray:
        return self.notes[self.offsets[index] : self.offsets[index + 1]]

    def __len__(self) -> int:
        return len(self.offsets) - 1


def load_split(data_dir: Path, split: str) -> PreparedSplit:
    """Load a split written by `prepare`; a one-line error if the cache is missing."""
    path = Path(data_dir) / f"{split}.npz"
    if not path.exists():
        raise CadenzaError(f"no prepared {split} split at {path}; run `cadenza prepare` first")
    with np.load(path) as archive:
        return PreparedSplit(archive["notes"], archive["offsets"], archive["sources"])

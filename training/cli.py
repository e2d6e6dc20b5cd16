"""Subcommands of the offline side: prepare, train, evaluate, export, render."""

from __future__ import annotations

from pathlib import Path

import click

from models.errors import CadenzaError


@click.command()
@click.option("--maestro", type=click.Path(path_type=Path), help="MAESTRO folder (uses its CSV's official split).")
@click.option("--midi-dir", type=click.Path(path_type=Path), help="Any folder tree of .mid/.midi files (90/5/5 split by path hash).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the caches and manifest.json.")
@click.option("--no-sustain", is_flag=True, help="Ignore the sustain pedal (notes end at their key release).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Parallel processes [default: all cores].")
@click.option("--force", is_flag=True, help="Re-parse even if the cache is up to date.")
def prepare(maestro, midi_dir, out, no_sustain, workers, force):
    """Parse MIDI into per-split note caches (train/validation/test) and a manifest."""
    from models.notes import Representation
    from training import prepare as ingest

    if (maestro is None) == (midi_dir is None):
        raise CadenzaError("give exactly one of --maestro DIR or --midi-dir DIR")
    if maestro is not None:
        files = ingest.list_maestro(maestro)
        source = {"kind": "maestro", "path": str(maestro.resolve())}
    else:
        files = ingest.list_midi_dir(midi_dir)
        source = {"kind": "midi-dir", "path": str(midi_dir.resolve())}
    if not files:
        raise CadenzaError(f"no .mid or .midi files found in {maestro or midi_dir}")
    manifest = ingest.prepare(files, out, source, Representation(sustain_pedal=not no_sustain), workers)
    if manifest["up_to_date"]:
        click.echo(f"{out}: up to date ({manifest['files']} files); nothing to do")
        return
    for split, info in manifest["splits"].items():
        click.echo(f"{split:>10}: {info['pieces']:5d} pieces {info['notes']:10,d} notes {info['hours']:8.2f} h")
    click.echo(f"skipped {len(manifest['skipped'])} of {manifest['files']} files in {manifest['seconds']:.1f} s"
               + (" (reasons in manifest.json)" if manifest["skipped"] else ""))
    for entry in manifest["skipped"][:10]:
        click.echo(f"  skipped {entry['file']}: {entry['reason']}")


def register(group: click.Group) -> None:
    group.add_command(prepare)

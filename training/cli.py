"""Subcommands of the offline side: prepare, train, evaluate, export, render."""

from __future__ import annotations

from pathlib import Path

import click

from models.errors import CadenzaError, require_tensorflow
from models.options import sampling_options
from models.primer import read_primer


@click.command()
@click.option("--maestro", type=click.Path(path_type=Path), help="MAESTRO folder (uses its CSV's official split).")
@click.option("--midi-dir", type=click.Path(path_type=Path), help="Any folder tree of .mid/.midi files (90/5/5 split by path hash).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the caches and manifest.json.")
@click.option("--no-sustain", is_flag=True, help="Ignore the sustain pedal (notes end at their key release).")
@click.option("--hold-restrikes", is_flag=True,
              help="Hold a note the pedal holds until the pedal lifts even where its key is struck again "
                   "(playing it cuts it there); by default it ends at the restrike.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Parallel processes [default: all cores].")
@click.option("--force", is_flag=True, help="Re-parse even if the cache is up to date.")
def prepare(maestro, midi_dir, out, no_sustain, hold_restrikes, workers, force):
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
    manifest = ingest.prepare(files, out, source, Representation(sustain_pedal=not no_sustain, restrikes_cut=not hold_restrikes), workers, force=force)
    if manifest["up_to_date"]:
        click.echo(f"{out}: up to date ({manifest['files']} files); nothing to do")
        return
    for split, info in manifest["splits"].items():
        click.echo(f"{split:>10}: {info['pieces']:5d} pieces {info['notes']:10,d} notes {info['hours']:8.2f} h")
    click.echo(f"skipped {len(manifest['skipped'])} of {manifest['files']} files in {manifest['seconds']:.1f} s"
               + (" (reasons in manifest.json)" if manifest["skipped"] else ""))
    for entry in manifest["skipped"][:10]:
        click.echo(f"  skipped {entry['file']}: {entry['reason']}")


@click.command()
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Folder written by `cadenza prepare`.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder (checkpoints, log.csv).")
@click.option("--preset", type=click.Choice(["default", "seed"]), default="default", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=400, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), help="Windows per step.")
@click.option("--window", type=click.IntRange(min=2), help="Notes per training window.")
@click.option("--lstm-layers", type=click.IntRange(min=1))
@click.option("--lstm-units", type=click.IntRange(min=1))
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True))
@click.option("--memory", type=click.IntRange(min=0), help="Attend over the last N notes beside the LSTM (0: none).")
@click.option("--memory-heads", type=click.IntRange(min=1))
@click.option("--interval-bias", is_flag=True,
              help="Give the pitch a learned bias by its interval from the note before and the last chord's top.")
@click.option("--init-from", type=click.Path(path_type=Path),
              help="Start from an exported model's weights (fine-tuning; what the config adds starts fresh).")
@click.option("--density-scope", type=click.Choice(["upcoming", "window"]),
              help="What the density control is measured over: the next few seconds (each note's own) or the whole "
                   "window (one value for a passage, as --density asks) [default: upcoming].")
@click.option("--censor-cut-lengths", is_flag=True,
              help="Train a length that a restrike cut as 'at least this long', so the network learns how long notes "
                   "are held (the restrikes it plays then cut them as the data's were).")
@click.option("--mask-sounding-keys", is_flag=True,
              help="Give the pitch no probability on a key whose last note still sounds at the next onset (no such "
                   "key is struck in the data, as prepared); the runtime tracks how long each key sounds.")
@click.option("--own-notes", type=click.FloatRange(0, 0.5), default=0.0, show_default=True,
              help="Share of each window's history replaced by the network's own draws (scheduled sampling), so "
                   "it learns to play on from notes of its own; costs a forward pass a step (--strategy none).")
@click.option("--patience", type=click.IntRange(min=1), default=6, show_default=True, help="Early stopping, in epochs.")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), help="Stop after this much training time.")
@click.option("--validation-windows", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--strategy", type=click.Choice(["none", "mirrored", "multiworker"]), default="none", show_default=True)
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its last checkpoint (with --learning-rate: anneal again from it).")
def train(data, out, preset, epochs, steps_per_epoch, batch_size, window, lstm_layers, lstm_units, learning_rate,
          memory, memory_heads, interval_bias, init_from, density_scope, censor_cut_lengths, mask_sounding_keys, own_notes, patience, max_minutes, validation_windows, seed, strategy, resume):
    """Train a model on a prepared dataset, checkpointing every epoch."""
    require_tensorflow("training")
    from training.train import TrainSettings, preset_config, train as run_training

    if own_notes and strategy != "none":
        raise CadenzaError("--own-notes works with --strategy none only (one machine, one step at a time)")

    config = preset_config(preset, batch_size=batch_size, window=window, lstm_layers=lstm_layers,
                           lstm_units=lstm_units, learning_rate=learning_rate, memory=memory,
                           memory_heads=memory_heads, density_scope=density_scope,
                           interval_bias=interval_bias or None, censor_cut_lengths=censor_cut_lengths or None,
                           mask_sounding_keys=mask_sounding_keys or None)
    settings = TrainSettings(data=data, out=out, epochs=epochs, steps_per_epoch=steps_per_epoch,
                             validation_windows=validation_windows, patience=patience, max_minutes=max_minutes,
                             seed=seed, strategy=strategy, resume=resume, init_from=init_from,
                             restart_rate=learning_rate if resume else None, own_notes=own_notes)
    state = run_training(settings, config)
    click.echo(f"{out}: {state['epoch']} epochs, best validation loss {state['best_val_loss']:.4f} "
               f"at epoch {state['best_epoch']}" + (f" ({state['stopped_because']})" if state.get("stopped_because") else ""))


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--split", "split_name", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--data", type=click.Path(path_type=Path), help="Prepared data [default: the run's training data, or data/maestro].")
@click.option("--style", is_flag=True, help="Free-running style evaluation against real excerpts, with the human ceiling.")
@click.option("--sweep", is_flag=True, help="With --style: choose the sampling on validation over a small grid.")
@click.option("--stateful", is_flag=True, help="Per-field and joint NLL over whole pieces, one stateful pass each.")
@click.option("--fit-lines", is_flag=True,
              help="Fit the line tables (--line-tilt) on the train split against the model's own lines "
                   "(--pieces x --draws excerpts a side); written into its card.")
@click.option("--continuation", is_flag=True, help="Continue MAESTRO prompts; how coherent the answers are with their calls.")
@click.option("--prompts", type=click.IntRange(2, 10000), default=100, show_default=True, help="--continuation: prompts.")
@click.option("--max-notes", type=click.IntRange(min=1), help="--stateful: score at most this many notes of each piece.")
@click.option("--pieces", type=click.IntRange(1, 10000), default=160, show_default=True, help="--style: generated and real excerpts.")
@click.option("--notes", type=click.IntRange(16, 100000), default=400, show_default=True, help="--style: notes per excerpt.")
@click.option("--drift-notes", type=click.IntRange(64, 1000000), default=10000, show_default=True,
              help="--style: length of each of the 96 drift streams.")
@click.option("--draws", type=click.IntRange(1, 100), default=4, show_default=True,
              help="--style: pairs of a generated and a real set the classifier test is run on, each pair its own seed "
                   "(one set of either moves the AUC by about +-0.015); their mean AUC is the figure to judge by.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Results folder [default: MODEL/evaluation].")
@sampling_options
@click.option("--no-plots", is_flag=True)
def evaluate(model, split_name, data, style, sweep, stateful, fit_lines, continuation, prompts, max_notes, pieces, notes, drift_notes,
             draws, seed, out, no_plots, **sampling):
    """Evaluate a model. MODEL is a training run (teacher-forced metrics on windows, beside a unigram
    baseline) or, with --style/--sweep/--stateful/--fit-lines/--continuation, an exported model or a run (exported first)."""
    if not (style or sweep or stateful or fit_lines or continuation):
        require_tensorflow("teacher-forced evaluation of a training run")
        from training.evaluate import run_evaluation

        result = run_evaluation(model, data, split_name, plots=not no_plots)
        for name in ("model", "unigram"):
            metrics = result[name]
            click.echo(f"{name:>8}: pitch NLL {metrics['pitch_nll']:.3f} nats, top-1 {metrics['pitch_top1']:.3f}, "
                       f"top-5 {metrics['pitch_top5']:.3f}, step MAE {metrics['step_mae_seconds']:.3f} s, "
                       f"duration MAE {metrics['duration_mae_seconds']:.3f} s over {metrics['notes']:,} notes")
        click.echo(f"written to {Path(model) / 'evaluation'}")
        return
    from models.options import sampling_from_options
    from models.graph import read_card
    from models.sampling import Sampling
    from training import model_eval
    from training.style import StyleSettings

    model_dir = model_eval.resolve_model(model)
    data = Path(data or _run_data(model) or "data/maestro")
    evaluation = model_eval.ModelEvaluation(model_dir, data, split_name, out=out, plots=not no_plots)
    settings = StyleSettings(pieces=pieces, notes=notes, seed=seed, drift_notes=drift_notes, draws=draws)
    chosen = sampling_from_options(read_card(model_dir), sampling)
    log = lambda message: click.echo(message, err=True)  # noqa: E731
    if stateful:
        result = model_eval.run_stateful(evaluation, max_notes, log=log)
        click.echo(f"stateful on {split_name}: joint NLL {result['joint_nll']:.3f} nats/note = "
                   + " + ".join(f"{result[f'{n}_nll']:.3f} {n}" for n in ("pitch", "step", "duration", "velocity"))
                   + f"; pitch top-1 {result['pitch_top1']:.3f} over {result['notes']:,} notes")
    if fit_lines:  # before the style: it plays with the tables just fitted
        model_eval.run_fit_lines(evaluation, chosen, settings, log=click.echo)
    if sweep:
        result = model_eval.run_sweep(evaluation, chosen, settings, log=log)
        chosen = Sampling(**result["best"])
        click.echo(f"sweep (validation): best {result['best']}")
    if style or sweep:
        model_eval.run_style(evaluation, chosen, settings, log=click.echo)
    if continuation:
        from training.continuation import ContinuationSettings

        model_eval.run_continuation(evaluation, chosen, ContinuationSettings(prompts=prompts, seed=seed), log=click.echo)
    click.echo(f"written to {evaluation.out_dir}")


def _run_data(path: Path) -> str | None:
    config = Path(path) / "config.json"
    if config.exists():
        import json

        return json.loads(config.read_text())["settings"]["data"]
    return None


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for savedmodel/, model.tflite, card.json.")
def export(run, out):
    """Export a run's best checkpoint as a stateful single-step graph with its model card.

    RUN may also be an exported model: it is exported again through today's step graph, its card's
    records and evaluation/ kept (--out may be the same folder)."""
    require_tensorflow("export")
    from training.export_run import export_run

    path = export_run(run, out)
    click.echo(f"exported {run} to {path}")


@click.command()
@click.option("--model", type=click.Path(path_type=Path), help="Exported model folder [default: the shipped model].")
@click.option("--backend", type=click.Choice(["auto", "tflite", "savedmodel"]), default="auto", show_default=True)
@click.option("--count", type=click.IntRange(min=1), default=4, show_default=True, help="Pieces, generated as one batch.")
@click.option("--notes", type=click.IntRange(min=1), default=256, show_default=True, help="Notes per piece.")
@sampling_options
@click.option("--instrument", default="Acoustic Grand Piano", show_default=True, help="GM name or program 0-127.")
@click.option("--primer", type=click.Path(path_type=Path), help="MIDI file to continue from.")
@click.option("--include-primer", is_flag=True, help="Start each output with the primer's notes.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Random seed: the same seed gives the same pieces.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--name", default="piece", show_default=True, help="File name prefix: NAME_000.mid ...")
@click.option("--wav", is_flag=True, help="Also render audio with FluidSynth (offline, 44.1 kHz).")
@click.option("--plots", is_flag=True, help="Piano roll + histograms per piece, and a comparison with the training data.")
@click.option("--soundfont", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def render(model, backend, count, notes, instrument, primer, include_primer, seed, out, name,
           wav, plots, soundfont, **sampling):
    """Batch-render pieces to MIDI files (and WAV, plots, summary.json)."""
    import sys

    from models.instruments import check_soundfont, resolve_instrument
    from models.options import sampling_from_options
    from models.runtime import DEFAULT_MODEL_DIR, read_card
    from training.render import RenderSettings, render as run_render

    card = read_card(model or DEFAULT_MODEL_DIR)
    chosen = sampling_from_options(card, sampling)
    if wav:
        soundfont = check_soundfont(soundfont)
    if "/" in name or "\\" in name or name in (".", ".."):
        raise CadenzaError(f"--name {name!r} must be a plain file name prefix, without folders")
    settings = RenderSettings(out=out, count=count, notes=notes, sampling=chosen,
                              program=resolve_instrument(instrument), seed=seed, model=model, backend=backend,
                              primer=read_primer(primer, card) if primer else None, primer_path=str(primer) if primer else None,
                              include_primer=include_primer, wav=wav, plots=plots, soundfont=soundfont, name=name,
                              progress=sys.stderr.isatty())
    summary = run_render(settings)
    rate = summary["generation"]["notes_per_second"]
    click.echo(f"wrote {count} pieces of {notes} notes to {out} ({rate:,.0f} notes/s generated)")


def register(group: click.Group) -> None:
    group.add_command(render)
    group.add_command(evaluate)
    group.add_command(export)
    group.add_command(prepare)
    group.add_command(train)

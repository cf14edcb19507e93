"""The training commands (train, export, grow-run, ship-weights): argument parsing and presentation only."""

from __future__ import annotations

from pathlib import Path

import click

from ..nn.presets import DEFAULT_PRESET, ENCODINGS, FREEZE_CHOICES, LAMBDAS, PRESETS, checked_lambdas
from .common import DEFAULT_VARIANT, DEVICE_CHOICE, VARIANT_CHOICE, out, resolve_device


@click.command()
@click.option("--variant", type=VARIANT_CHOICE, default=DEFAULT_VARIANT, show_default=True)
@click.option("--preset", type=click.Choice(list(PRESETS)), default=DEFAULT_PRESET, show_default=True,
              help="Network sizes (stereocodec.nn.presets.PRESETS): wide = 192 latent channels per view.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder; an existing checkpoint there is resumed.")
@click.option("--photos", type=click.Path(path_type=Path, file_okay=False), multiple=True, help="Folder of single photos (synthetic stereo pairs).")
@click.option("--stereo", type=click.Path(path_type=Path, file_okay=False), multiple=True, help="Folder of real stereo pairs (InStereo2K, KITTI, Cityscapes, Middlebury, left/+right/).")
@click.option("--steps", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--crop", type=int, default=256, show_default=True, help="Square crop size, a multiple of 64.")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--aux-lr", type=float, default=1e-3, show_default=True, help="Learning rate of the hyperprior's quantiles.")
@click.option("--warmup", type=click.IntRange(min=0), default=300, show_default=True, help="Steps of linear lr warm-up (also after --init-from).")
@click.option("--bf16", is_flag=True, help="Mixed precision (bfloat16 transforms, float32 likelihoods): 1.3-1.5x faster "
              "per step on a CPU with AMX (benchmarks/bench_train_step.py); may be slower without bfloat16 support.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True, help="Data loader processes.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch CPU threads.")
@click.option("--device", type=DEVICE_CHOICE, default="auto", show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--val-every", type=click.IntRange(min=0), default=500, show_default=True)
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--init-from", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Warm start a new run from a run's checkpoint or a .safetensors weights file (tensors of equal name and shape).")
@click.option("--entropy-from", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="After --init-from, take the variant's own entropy model (every tensor outside the shared transforms, "
                   "hyperprior and gains) from these weights of the same variant: a BiSIC on new BiSIC-Fast transforms "
                   "starts from the BiSIC trained on the old ones.")
@click.option("--freeze", type=click.Choice(list(FREEZE_CHOICES)), default="none", show_default=True,
              help="shared: keep the transforms, hyperprior and gains fixed and train only the variant's own entropy "
                   "model (BiSIC on BiSIC-Fast's transforms, with --init-from).")
@click.option("--ema-decay", type=float, default=0.999, show_default=True,
              help="Decay of the weights' moving average, which validation uses and export writes.")
@click.option("--lambdas", default=",".join(f"{v:g}" for v in LAMBDAS), show_default=True,
              help="Each quality level's lambda (loss = lambda * MSE + bpp), comma-separated and increasing. A run "
                   "resumed or warm-started from one trained at other lambdas has its level gains re-spread to these.")
def train(**opts) -> None:
    """Train a variable-rate network (one quality level per lambda); resumes from OUT/checkpoint.pt."""
    import torch

    from ..train.loop import TrainConfig
    from ..train.loop import train as run

    from ..io.images import InputError

    if opts["crop"] % 64:
        raise InputError("--crop must be a multiple of 64")
    try:
        opts["lambdas"] = checked_lambdas(opts["lambdas"].split(","))
    except ValueError as e:
        raise InputError(f"--lambdas {opts['lambdas']!r}: {e}") from None
    threads = opts.pop("threads")
    if threads:
        torch.set_num_threads(threads)
    opts["device"] = resolve_device(opts["device"])
    for key in ("photos", "stereo"):
        opts[key] = list(opts[key])
    cfg = TrainConfig(**{k.replace("-", "_"): v for k, v in opts.items()})
    run(cfg, log=lambda line: out.print(line, highlight=False))


@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("output", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--name", default=None, help="Label stored in the weights and in every .sbic made with them.")
@click.option("--encoding", type=click.Choice(list(ENCODINGS)), default="float16", show_default=True,
              help="How tensors are stored: int8 keeps convolution weights as 8-bit rows with float32 scales "
                   "(half the size of float16; benchmarks/weight_rounding.py measures the cost); int8-delta stores "
                   "the same codes as steps from the --reference file, or from its base when it is itself int8-delta "
                   "(about a third of int8 in git after a short run; that whole file must stay beside it or in the store).")
@click.option("--reference", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Weights file whose unchanged tensors keep their stored bytes (default: the run's --init-from "
                   ".safetensors file, when it is still there).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT.")
def export(checkpoint: Path, output: Path, name: str | None, encoding: str, reference: Path | None, force: bool) -> None:
    """Write shipped weights (safetensors + metadata) from a training checkpoint."""
    from ..io.images import check_output
    from ..io.outputs import refuse_inputs
    from ..train.loop import export_weights

    refuse_inputs((output,), (checkpoint, *([reference] if reference else [])))
    check_output(output, force)
    meta = export_weights(checkpoint, output, name, encoding=encoding, reference=reference)
    kept = f"; {meta['kept']} tensors kept as stored in {meta['reference']}" if meta["reference"] else ""
    out.print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB, {encoding}{kept}): {meta['name']}", highlight=False)


@click.command("grow-run")
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--preset", type=click.Choice(list(PRESETS)), required=True, help="The wider preset to grow into.")
@click.option("--out", "run_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="New run folder (must hold no checkpoint).")
def grow_run(checkpoint: Path, preset: str, run_dir: Path) -> None:
    """Grow a training run into a wider preset without changing what it computes; optimiser state,
    moving average and step carry on, so `train --out OUT --preset PRESET` continues the same run."""
    from ..train.loop import grow_run as grow

    out.print(grow(checkpoint, run_dir, preset), highlight=False)


@click.command("ship-weights")
@click.argument("weights", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--store", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="The weights_store folder of a source checkout (default: the one this package runs from).")
@click.option("--archive", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="The weights archive's package folder (default: archive/stereocodec_weights_archive of the store's checkout).")
@click.option("--not-default", is_flag=True, help="Keep the current default for encoding; only add the version.")
def ship_weights(weights: Path, store: Path | None, archive: Path | None, not_default: bool) -> None:
    """For maintainers: add exported weights to the store as a new version; earlier versions stay,
    and those no default needs any more move to the weights archive (the package carries the rest)."""
    from ..store import add_version

    entry = add_version(weights, store, default=not not_default, archive_dir=archive)
    role = "the new default" if entry.default else "an extra version"
    out.print(f"added {entry.file} ({entry.name}, {entry.fingerprint[:12]}) as {role}, versions no default needs "
              "moved to the weights archive; run tests/data/store/make_fixtures.py and commit the store, the archive "
              "and the fixtures", highlight=False)

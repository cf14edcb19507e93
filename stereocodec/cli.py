"""The `stereo-codec` command line: argument parsing and presentation only."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .coding import CodingError
from .container import ContainerError
from .image_io import InputError, check_pair, read_view
from .weights import WeightsError, load_default, load_weights

VARIANT_CHOICE = click.Choice(["bisic", "bisic-fast"])
DEVICE_CHOICE = click.Choice(["cpu", "cuda", "auto"])
USER_ERRORS: tuple[type[Exception], ...] = (InputError, WeightsError, ContainerError, CodingError)
DEFAULT_VARIANT = "bisic-fast"

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available (use --device cpu)")
    return name


def notice(msg: str) -> None:
    err.print(f"[yellow]note:[/] {msg}", highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stereo-codec")
def cli() -> None:
    """Learned stereo image codec (BiSIC / BiSIC-Fast): one .sbic file per stereo pair."""


@cli.command()
@click.argument("left", type=click.Path(path_type=Path))
@click.argument("right", type=click.Path(path_type=Path))
@click.option("--weights", type=click.Path(path_type=Path), required=True, help="Release .pth(.tar) or .safetensors file.")
@click.option("--variant", type=VARIANT_CHOICE, default=None, help="Network variant (read from the weights when unambiguous).")
@click.option("--quality", type=int, default=None, help="Quality level, for variable-rate weights.")
@click.option("--device", type=DEVICE_CHOICE, default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def estimate(left: Path, right: Path, weights: Path, variant: str | None, quality: int | None, device: str, as_json: bool) -> None:
    """The release's evaluation: estimated bpp (no bitstream), PSNR and MS-SSIM per view."""
    from .evaluate import estimate_pair

    lv, rv = read_view(left, "left"), read_view(right, "right")
    check_pair(lv, rv)
    for n in lv.notices + rv.notices:
        notice(n)
    from .codec import resolve_quality

    loaded = load_weights(weights, variant, resolve_device(device))
    report = estimate_pair(loaded.model, lv.pixels, rv.pixels, resolve_quality(loaded.model, quality)[1])
    report["weights"] = loaded.name
    if as_json:
        click.echo(json.dumps(report))
        return
    table = Table(title=f"{report['variant']} estimate, {report['width']}x{report['height']} per view ({loaded.name})")
    for col in ("view", "bpp (estimated)", "PSNR dB", "MS-SSIM"):
        table.add_column(col, justify="right")
    for name in ("left", "right", ""):
        sfx = f"_{name}" if name else ""
        table.add_row(name or "pair", f"{report['bpp' + sfx]:.4f}", f"{report['psnr' + sfx]:.3f}", f"{report['ms_ssim' + sfx]:.5f}")
    out.print(table)


@cli.command()
@click.option("--variant", type=VARIANT_CHOICE, default="bisic-fast", show_default=True)
@click.option("--preset", type=click.Choice(["small", "official", "tiny"]), default="small", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder; an existing checkpoint there is resumed.")
@click.option("--photos", type=click.Path(path_type=Path, file_okay=False), multiple=True, help="Folder of single photos (synthetic stereo pairs).")
@click.option("--stereo", type=click.Path(path_type=Path, file_okay=False), multiple=True, help="Folder of real stereo pairs (InStereo2K, KITTI, Cityscapes, Middlebury, left/+right/).")
@click.option("--steps", type=int, default=100_000, show_default=True)
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--crop", type=int, default=256, show_default=True, help="Square crop size, a multiple of 64.")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--aux-lr", type=float, default=1e-3, show_default=True, help="Learning rate of the hyperprior's quantiles.")
@click.option("--warmup", type=int, default=300, show_default=True, help="Steps of linear lr warm-up (also after --init-from).")
@click.option("--bf16", is_flag=True, help="Mixed precision (bfloat16 transforms, float32 likelihoods): 1.3-1.5x faster "
              "per step on a CPU with AMX (benchmarks/bench_train_step.py); may be slower without bfloat16 support.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="Data loader processes.")
@click.option("--threads", type=int, default=None, help="Torch CPU threads.")
@click.option("--device", type=DEVICE_CHOICE, default="auto", show_default=True)
@click.option("--checkpoint-every", type=int, default=100, show_default=True)
@click.option("--val-every", type=int, default=500, show_default=True)
@click.option("--log-every", type=int, default=10, show_default=True)
@click.option("--init-from", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Warm start a new run from a run's checkpoint or a .safetensors weights file (tensors of equal name and shape).")
def train(**opts) -> None:
    """Train a variable-rate network (six quality levels); resumes from OUT/checkpoint.pt."""
    import torch

    from .train import TrainConfig, train as run

    if opts["crop"] % 64:
        raise InputError("--crop must be a multiple of 64")
    threads = opts.pop("threads")
    if threads:
        torch.set_num_threads(threads)
    opts["device"] = resolve_device(opts["device"])
    for key in ("photos", "stereo"):
        opts[key] = list(opts[key])
    cfg = TrainConfig(**{k.replace("-", "_"): v for k, v in opts.items()})
    run(cfg, log=lambda line: out.print(line, highlight=False))


@cli.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("output", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--name", default=None, help="Label stored in the weights and in every .sbic made with them.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT.")
def export(checkpoint: Path, output: Path, name: str | None, force: bool) -> None:
    """Write shipped weights (float16 safetensors + metadata) from a training checkpoint."""
    from .image_io import check_output
    from .train import export_weights

    check_output(output, force)
    meta = export_weights(checkpoint, output, name)
    out.print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB): {meta['name']}")


def _weights(path: Path | None, variant: str | None, device: str):
    if path is not None:
        return load_weights(path, variant, resolve_device(device))
    return load_default(variant or DEFAULT_VARIANT, resolve_device(device))


def _read_sbic(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None


@cli.command()
@click.argument("left", type=click.Path(path_type=Path))
@click.argument("right", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True, help="The .sbic file to write.")
@click.option("--variant", type=VARIANT_CHOICE, default=None, help=f"Network variant (default {DEFAULT_VARIANT}).")
@click.option("--quality", "-q", type=int, default=None, help="Quality level (0 = smallest files; default 3).")
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Weights file instead of the shipped ones.")
@click.option("--device", type=DEVICE_CHOICE, default="cpu", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--psnr", "with_psnr", is_flag=True, help="Also reconstruct and report PSNR (one more synthesis pass).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def encode(left: Path, right: Path, output: Path, variant, quality, weights, device, force, with_psnr, as_json) -> None:
    """Compress a stereo pair into one .sbic file."""
    import time

    from .codec import Codec
    from .image_io import check_output, write_bytes
    from .metrics import psnr

    check_output(output, force)
    lv, rv = read_view(left, "left"), read_view(right, "right")
    check_pair(lv, rv)
    for n in lv.notices + rv.notices:
        notice(n)
    codec = Codec(_weights(weights, variant, device))
    t0 = time.perf_counter()
    enc = codec.encode(lv, rv, quality, reconstruct=with_psnr)
    seconds = time.perf_counter() - t0
    write_bytes(output, enc.data, force)
    h, w = lv.pixels.shape[:2]
    summary = {
        "output": str(output), "bytes": len(enc.data), "bpp": 8 * len(enc.data) / (2 * h * w),
        "quality": enc.container.quality, "variant": enc.container.variant, "width": w, "height": h,
        "seconds": seconds,
    }
    if with_psnr:
        summary |= {"psnr_left": psnr(lv.pixels, enc.left), "psnr_right": psnr(rv.pixels, enc.right)}
    if as_json:
        click.echo(json.dumps(summary))
        return
    quality_text = f", PSNR {summary['psnr_left']:.2f} / {summary['psnr_right']:.2f} dB (left / right)" if with_psnr else ""
    out.print(
        f"{output}: {len(enc.data):,} bytes, {summary['bpp']:.4f} bpp{quality_text}, "
        f"{enc.container.variant} q{enc.container.quality}, {seconds:.1f} s",
        highlight=False,
    )


@cli.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.option("-o", "--output", "prefix", type=click.Path(path_type=Path), default=None,
              help="Prefix: writes PREFIX_left.png and PREFIX_right.png (default: next to INPUT).")
@click.option("--left", "left_out", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--right", "right_out", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Weights file (default: the shipped weights of the file's variant).")
@click.option("--device", type=DEVICE_CHOICE, default="cpu", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
def decode(input: Path, prefix, left_out, right_out, weights, device, force) -> None:
    """Decode a .sbic file back to its two views (original size and pixel mode)."""
    from .codec import Codec
    from .container import Container
    from .image_io import check_output, restore_mode, write_image

    if (left_out is None) != (right_out is None):
        raise InputError("give both --left and --right, or neither")
    if left_out is not None and prefix is not None:
        raise InputError("use either -o PREFIX or --left/--right")
    if left_out is None:
        base = prefix if prefix is not None else input.with_suffix("")
        left_out, right_out = (base.parent / f"{base.name}_{v}.png" for v in ("left", "right"))
    if left_out.resolve() == right_out.resolve():
        raise InputError("--left and --right name the same file")
    for path in (left_out, right_out):
        check_output(path, force)
    data = _read_sbic(input)
    header = Container.from_bytes(data)
    codec = Codec(_weights(weights, header.variant, device))
    dec = codec.decode(data)
    for path, pixels, view in ((left_out, dec.left, header.views[0]), (right_out, dec.right, header.views[1])):
        write_image(path, restore_mode(pixels, view.mode), force)
    out.print(f"wrote {left_out} and {right_out} ({header.views[0].width}x{header.views[0].height})", highlight=False)


@cli.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(input: Path, as_json: bool) -> None:
    """Show a .sbic file's header and streams (no weights needed)."""
    from .container import Container

    data = _read_sbic(input)
    c = Container.from_bytes(data)
    h, w = c.views[0].height, c.views[0].width
    pixels = 2 * h * w
    report = {
        "file": str(input), "bytes": len(data), "bpp": 8 * len(data) / pixels, "variant": c.variant,
        "quality": c.quality, "weights": c.weights_name, "weights_fingerprint": c.weights_fingerprint.hex(),
        "coder": c.coder, "width": w, "height": h,
        "modes": [v.mode for v in c.views], "padded": [c.padded_height, c.padded_width],
        "header_bytes": c.header_size(), "symbols_checksum": f"{c.symbols_checksum:08x}",
        "streams": [{"name": s.name, "bytes": len(s.data), "bpp": 8 * len(s.data) / pixels} for s in c.streams],
    }
    if as_json:
        click.echo(json.dumps(report))
        return
    table = Table(title=f"{input} — .sbic v1, {c.variant} q{c.quality}, {w}x{h} x 2 views ({', '.join(report['modes'])})")
    table.add_column("part")
    table.add_column("bytes", justify="right")
    table.add_column("bits/pixel", justify="right")
    table.add_row("header", str(report["header_bytes"]), f"{8 * report['header_bytes'] / pixels:.4f}")
    for s in report["streams"]:
        table.add_row(f"stream {s['name']}", str(s["bytes"]), f"{s['bpp']:.4f}")
    table.add_row("total", str(len(data)), f"{report['bpp']:.4f}", style="bold")
    out.print(table)
    out.print(f"weights: {c.weights_name} ({c.weights_fingerprint.hex()[:16]}), coder: {c.coder}", highlight=False)


from .cli_batch import batch, report  # noqa: E402  (registered on the group below)

cli.add_command(batch)
cli.add_command(report)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 1, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except USER_ERRORS as e:
        err.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:  # a bug of ours: still one line, the traceback on request
        if os.environ.get("STEREOCODEC_DEBUG"):
            raise
        err.print(f"[red]internal error:[/] {type(e).__name__}: {e} (set STEREOCODEC_DEBUG=1 for a traceback)", highlight=False, soft_wrap=True)
        sys.exit(2)

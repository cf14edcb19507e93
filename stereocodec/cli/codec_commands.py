"""The coding commands (encode, decode, info, estimate): argument parsing, output files and
presentation over the Python API (`stereocodec.api`), so that both give the same bytes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
import click
from rich.table import Table

from .common import (
    DEFAULT_VARIANT, DEVICE_CHOICE, DEVICE_HELP, ENV_WEIGHTS, MAX_PIXELS_HELP, QUALITY_HELP, QUALITY_TYPE, VARIANT_CHOICE, err, notes_shown,
    notice, out, size_targets, working,
)


@click.command()
@click.argument("left", type=click.Path(path_type=Path))
@click.argument("right", type=click.Path(path_type=Path))
@click.option("--weights", type=click.Path(path_type=Path), default=None, envvar=ENV_WEIGHTS,
              help=f"Release .pth(.tar) or .safetensors file (default: the shipped weights; env {ENV_WEIGHTS}).")
@click.option("--variant", type=VARIANT_CHOICE, default=None, help="Network variant (read from the weights when unambiguous).")
@click.option("--quality", type=QUALITY_TYPE, default=None, metavar="Q",
              help="Quality 0.0-5.0 for variable-rate weights (as encode -q; default 3); release checkpoints have only 0.")
@click.option("--device", type=DEVICE_CHOICE, default="cpu", show_default=True, help=DEVICE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def estimate(left: Path, right: Path, weights: Path | None, variant: str | None, quality: float | None, device: str, as_json: bool) -> None:
    """The release's evaluation: estimated bpp (no bitstream), PSNR and MS-SSIM per view."""
    from .. import api
    from ..codec import resolve_quality
    from ..eval.estimate import estimate_pair

    with notes_shown():
        lv, rv = api.read_pair(left, right)
    loaded = api.load_weights_for(weights, variant, device)
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


@click.command()
@click.argument("left", type=click.Path(path_type=Path))
@click.argument("right", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="The .sbic file to write; a folder gets LEFT's name; - writes to standard output.")
@click.option("--variant", type=VARIANT_CHOICE, default=None, help=f"Network variant (default {DEFAULT_VARIANT}).")
@click.option("--quality", "-q", type=QUALITY_TYPE, default=None, metavar="Q", help=QUALITY_HELP)
@click.option("--weights", type=click.Path(path_type=Path), default=None, envvar=ENV_WEIGHTS,
              help=f"Weights file instead of the shipped ones (env {ENV_WEIGHTS}).")
@click.option("--device", type=DEVICE_CHOICE, default="cpu", show_default=True, help=DEVICE_HELP)
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None, help=MAX_PIXELS_HELP)
@click.option("--psnr", "psnr_opt", type=float, is_flag=False, flag_value=0.0, default=None, metavar="[DB]",
              help="Alone: also reconstruct and report PSNR (one more synthesis pass). With DB (> 0): choose the lowest "
              "quality whose PSNR (mean of the two views) is at least DB.")
@size_targets
@click.option("--refine", "refine_steps", type=click.IntRange(min=0), default=0, show_default=True, metavar="STEPS",
              help="Encoder-side latent refinement: STEPS optimiser steps on this pair's latent (60 steps: about 130x the plain "
                   "encode time for 60 steps; gains most at high quality). Any decoder reads the file.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def encode(left: Path, right: Path, output: Path, variant: str | None, quality: float | None, weights: Path | None,
           device: str, force: bool, max_pixels: int | None, psnr_opt: float | None, size: int | None, bpp: float | None,
           refine_steps: int, as_json: bool) -> None:
    """Compress a stereo pair into one .sbic file, at a quality or at a target size, bpp or PSNR.

    Targets are met by bisection over the quality scale on real encodes (about 8-12 of them).
    """
    import time

    from .. import api
    from ..io.images import check_output, write_bytes
    from ..io.files import is_stdio
    from ..io.outputs import encode_output
    from ..metrics import psnr

    setting = api.parse_setting(quality, size, bpp, psnr_opt or None, refine_steps)
    with_psnr = psnr_opt is not None
    output, note = encode_output(output, left, right)
    if note:
        notice(note)
    if not is_stdio(output):
        check_output(output, force)
    with notes_shown():
        lv, rv = api.read_pair(left, right)
    codec = api.Codec(variant, weights=weights, device=device, max_pixels=max_pixels)
    codec.check_size(*lv.pixels.shape[:2])  # refuse before the progress line and before any network runs
    t0 = time.perf_counter()
    with working(f"encoding {left.name} + {right.name}", lv.pixels.shape):
        enc, reached = codec.encode_views(lv, rv, setting, refine_steps, reconstruct=with_psnr)
    seconds = time.perf_counter() - t0
    if is_stdio(output):
        sys.stdout.buffer.write(enc.data)
        sys.stdout.buffer.flush()
    else:
        write_bytes(output, enc.data, force)
    h, w = lv.pixels.shape[:2]
    summary = {
        "output": str(output), "bytes": len(enc.data), "bpp": enc.container.bpp(len(enc.data)),
        "quality": enc.container.quality_value, "variant": enc.container.variant, "width": w, "height": h,
        "seconds": seconds,
    }
    if reached is not None:
        summary |= {"target": {"kind": setting.kind, "value": setting.value}, "encodes": reached.encodes,
                    "under_budget": bool(reached.under_budget)}
    if with_psnr:
        summary |= {"psnr_left": psnr(lv.pixels, enc.left), "psnr_right": psnr(rv.pixels, enc.right)}
    if enc.refinement is not None:
        summary |= {"refinement": {"steps": enc.refinement.steps, "loss_before": enc.refinement.loss_before,
                                   "loss_after": enc.refinement.loss_after}}
    if as_json:
        click.echo(json.dumps(summary), err=is_stdio(output))
        return
    shown = err if is_stdio(output) else out
    if reached is not None:
        shown.print(f"target {setting.describe()}: {reached.describe(setting)}", highlight=False)
    quality_text = f", PSNR {summary['psnr_left']:.2f} / {summary['psnr_right']:.2f} dB (left / right)" if with_psnr else ""
    if enc.refinement is not None:
        r = enc.refinement
        quality_text += (f", refined in {r.steps} steps: estimated RD loss {r.loss_before:.4f} -> {r.loss_after:.4f} "
                         f"({100 * (r.loss_after / r.loss_before - 1):+.1f} %)")
    shown.print(
        f"{output}: {len(enc.data):,} bytes, {summary['bpp']:.4f} bpp{quality_text}, "
        f"{enc.container.variant} q{enc.container.quality_value:g}, {seconds:.1f} s",
        highlight=False,
    )


@click.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.option("-o", "--output", "prefix", type=click.Path(path_type=Path), default=None,
              help="Prefix: writes PREFIX_left.png and PREFIX_right.png (default: next to INPUT); a folder: inside it.")
@click.option("--left", "left_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the left view here (with --right; instead of -o).")
@click.option("--right", "right_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the right view here (with --left).")
@click.option("--weights", type=click.Path(path_type=Path), default=None, envvar=ENV_WEIGHTS,
              help=f"Weights file (default: the shipped weights that wrote INPUT, found by fingerprint; env {ENV_WEIGHTS}).")
@click.option("--device", type=DEVICE_CHOICE, default="cpu", show_default=True, help=DEVICE_HELP)
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None, help=MAX_PIXELS_HELP)
def decode(input: Path, prefix: Path | None, left_out: Path | None, right_out: Path | None, weights: Path | None,
           device: str, force: bool, max_pixels: int | None) -> None:
    """Decode a .sbic file (- reads standard input) back to its two views (original size and pixel mode)."""
    from PIL import Image

    from .. import api
    from ..container import Container
    from ..io.images import check_output
    from ..io.files import read_input
    from ..io.outputs import decode_outputs, write_images_together

    left_out, right_out = decode_outputs(input, prefix, left_out, right_out)
    for path in (left_out, right_out):
        check_output(path, force)
    header = Container.from_bytes(read_input(input))
    codec = api.Codec(weights=weights, device=device, max_pixels=max_pixels)
    codec.check_decodable(header)  # refuse before the progress line and before any network runs
    with working(f"decoding {input.name}", (header.views[0].height, header.views[0].width)):
        left_view, right_view = codec.decode_container(header)
    for path in (left_out, right_out):
        check_output(path, force)  # again: one may have appeared while decoding
    write_images_together([(left_out, Image.fromarray(left_view)), (right_out, Image.fromarray(right_view))])
    out.print(f"wrote {left_out} and {right_out} ({header.views[0].width}x{header.views[0].height})", highlight=False)


@click.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(input: Path, as_json: bool) -> None:
    """Show a .sbic file's header and streams (no weights needed)."""
    from dataclasses import asdict, replace

    from .. import api
    from ..io.files import read_input

    r = replace(api.info(read_input(input)), file=str(input))
    if as_json:
        click.echo(json.dumps(asdict(r)))
        return
    table = Table(title=f"{input} — .sbic v{r.format_version}, {r.variant} q{r.quality:g}, {r.width}x{r.height} x 2 views ({', '.join(r.modes)})")
    table.add_column("part")
    table.add_column("bytes", justify="right")
    table.add_column("bits/pixel", justify="right")
    table.add_row("header", str(r.header_bytes), f"{r.bpp_of(r.header_bytes):.4f}")
    for s in r.streams:
        table.add_row(f"stream {s.name}", str(s.bytes), f"{s.bpp:.4f}")
    table.add_row("total", str(r.bytes), f"{r.bpp:.4f}", style="bold")
    out.print(table)
    out.print(f"weights: {r.weights} ({r.weights_fingerprint[:16]}), coder: {r.coder}", highlight=False)

"""Where BiSIC's masked context gains or loses bits against BiSIC-Fast's checkerboard, slice by slice
(not a test: prints measured figures; weights/README.md quotes them).

Give two weights files on the same transforms and hyperprior (a BiSIC trained with
`train --freeze shared` on that BiSIC-Fast; by default the shipped defaults, which since
BiSIC-Fast step 97,857 need `--bisic-fast archive/stereocodec_weights_archive/bisic-fast-step77951.safetensors`
to match BiSIC step 82,451): then the latent y and
the hyper-latent bits are the same and only the entropy model differs (checked: the script
refuses files whose analysis transforms differ). The release's eval forward
(estimated bits, the likelihoods) runs on a centre crop of each pair of PAIRS_DIR at the given
levels, and the bits of y are summed over groups of GROUP channels (two BiSIC slices, one
BiSIC-Fast slice at the `wide` preset). Usage:

    python benchmarks/context_bits.py [PAIRS_DIR] [--bisic FILE] [--bisic-fast FILE] [--crop 512] [--levels 0,5] [--group 32] [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from stereocodec.io.images import pair_tensor, read_view
from stereocodec.store import load_chosen

VARIANTS = ("bisic", "bisic-fast")


def centre_crops(folder: Path, size: int) -> list[torch.Tensor]:
    out = []
    for pair in sorted(d for d in folder.iterdir() if d.is_dir()):
        views = [read_view(next(pair.glob(f"{side}.*"))).pixels for side in ("left", "right")]
        h, w = views[0].shape[:2]
        top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
        out.append(pair_tensor(*(v[top:top + size, left:left + size] for v in views)))
    return out


@torch.no_grad()
def group_bits(model: torch.nn.Module, pairs: list[torch.Tensor], quality: int, group: int) -> tuple[torch.Tensor, float]:
    """Estimated bits per pixel of both views: of y per channel group, and of z."""
    y_bits, z_bits, pixels = 0.0, 0.0, 0
    for x in pairs:
        out = model(x, quality)
        y_bits = y_bits + (-torch.log2(out["likelihoods"]["y"])).sum(dim=(0, 2, 3, 4)).reshape(-1, group).sum(dim=1)
        z_bits += float((-torch.log2(out["likelihoods"]["z"])).sum())
        pixels += 2 * x.shape[-1] * x.shape[-2]
    return y_bits / pixels, z_bits / pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="?", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/stereo")
    parser.add_argument("--bisic", type=Path, help="BiSIC weights (default: the shipped default)")
    parser.add_argument("--bisic-fast", type=Path, help="BiSIC-Fast weights (default: the shipped default)")
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--levels", default="0,5")
    parser.add_argument("--group", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = centre_crops(args.pairs, args.crop)
    files = {"bisic": args.bisic, "bisic-fast": args.bisic_fast}
    models = {v: load_chosen(f, v).model.eval() for v, f in files.items()}
    a, b = (dict(m.Conv3DEncoder_A.named_parameters()) for m in models.values())
    if any(not torch.equal(a[k], b[k]) for k in a):
        raise SystemExit("error: the two weights files have different analysis transforms; give a BiSIC trained on this BiSIC-Fast")
    console = Console(width=140)
    for q in (int(s) for s in args.levels.split(",")):
        bits = {v: group_bits(m, pairs, q, args.group) for v, m in models.items()}
        groups = len(bits[VARIANTS[0]][0])
        table = Table(title=f"quality {q}: estimated bpp of y per {args.group} channels ({len(pairs)} pairs, {args.crop}x{args.crop} centre crops)")
        table.add_column("variant")
        for g in range(groups):
            table.add_column(f"ch{g * args.group}+", justify="right")
        table.add_column("y", justify="right")
        table.add_column("z", justify="right")
        for v, (y, z) in bits.items():
            table.add_row(v, *(f"{float(b):.4f}" for b in y), f"{float(y.sum()):.4f}", f"{z:.4f}")
        ratio = bits["bisic"][0] / bits["bisic-fast"][0] - 1
        table.add_row("bisic vs fast", *(f"{100 * float(r):+.1f} %" for r in ratio),
                      f"{100 * float(bits['bisic'][0].sum() / bits['bisic-fast'][0].sum() - 1):+.1f} %", "")
        console.print(table)


if __name__ == "__main__":
    main()

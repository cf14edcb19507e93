"""Training speed per step, float32 against --bf16 (not a test: prints measured figures).

Times the real `stereocodec.train.loop.train_step` (forward, RD loss, backward, clipping, both
optimisers) on random batches, after warm-up steps, for each variant, in one process per
configuration. Usage:

    python benchmarks/bench_train_step.py [--variants bisic-fast,bisic] [--preset small]
                                          [--batch 4] [--crop 128] [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table


def measure(variant: str, preset: str, batch: int, crop: int, steps: int, bf16: bool, threads: int) -> dict:
    """Run in the child process."""
    import torch

    from stereocodec.nn.models import build_model
    from stereocodec.nn.presets import LAMBDAS
    from stereocodec.train.loop import TrainConfig, make_optimizers, preset_config, train_step

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = TrainConfig(variant=variant, preset=preset, batch=batch, crop=crop, bf16=bf16, warmup=0)
    model = build_model(variant, preset_config(preset, variant)).train()
    opt, aux, sched = make_optimizers(model, cfg)
    x = torch.rand(batch, 3, 2, crop, crop)
    q = torch.arange(batch) % len(LAMBDAS)
    lambdas = torch.tensor(LAMBDAS, dtype=torch.float32)[q]
    for _ in range(2):
        train_step(model, model, x, q, lambdas, opt, aux, sched, cfg)
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(model, model, x, q, lambdas, opt, aux, sched, cfg)
    return {"variant": variant, "bf16": bf16, "s_per_step": (time.perf_counter() - t0) / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="bisic-fast,bisic")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        variant, bf16 = json.loads(args.child)
        print(json.dumps(measure(variant, args.preset, args.batch, args.crop, args.steps, bf16, args.threads)))
        return
    table = Table(title=f"train step, preset {args.preset}, batch {args.batch}, {args.crop}x{args.crop} crops, "
                        f"{args.threads} threads")
    for col in ("variant", "float32 s/step", "bf16 s/step", "float32 / bf16"):
        table.add_column(col)
    base = [sys.executable, __file__, "--preset", args.preset, "--batch", str(args.batch), "--crop", str(args.crop),
            "--steps", str(args.steps), "--threads", str(args.threads)]
    for variant in args.variants.split(","):
        times = []
        for bf16 in (False, True):
            out = subprocess.run([*base, "--child", json.dumps([variant, bf16])], capture_output=True, text=True,
                                 check=True)
            times.append(json.loads(out.stdout.strip().splitlines()[-1])["s_per_step"])
        table.add_row(variant, f"{times[0]:.3f}", f"{times[1]:.3f}", f"{times[0] / times[1]:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()

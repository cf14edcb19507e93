"""Training: the release's rate-distortion objective, variable rate, exact resume, DDP.

One network covers all quality levels: each quality q has learned channel gains on y
(`gain[q]` before quantisation, `inv_gain[q]` after), and every training item draws its q,
weighting its distortion by the run's lambda for q (`TrainConfig.lambdas`). Batches are a pure function of (seed, step), and
checkpoints hold model, its moving average, optimisers, schedule, step and the torch RNG, so
a resumed run continues exactly as an uninterrupted one. A step whose gradient is not finite
is skipped and logged; bfloat16 is used only where its gradients match float32's on the
first batch; exported weights are the exponential moving average of the trained ones.
"""

from __future__ import annotations

import copy
import os
import signal
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from ..errors import StereoCodecError
from ..io.pairs import find_pairs
from ..nn.losses import rate_distortion
from ..nn.models import BiSICBase, BiSICConfig, build_model
from ..nn.presets import (DEFAULT_PRESET, DEFAULT_SLICES, FREEZE_CHOICES, LAMBDAS, PAPER_LAMBDAS, PRESETS,
                          SHARED_PREFIXES, checked_lambdas)
from ..weights import load_weights, save_weights
from .data import StereoPairDataset, SyntheticStereoDataset, photo_paths, split_train_val
from .grow import GrowthError, can_grow, grow

CHECKPOINT_NAME = "checkpoint.pt"


class RunError(StereoCodecError):
    """A training run that cannot start as asked (data, folder, sources); one line for the user."""


def preset_config(preset: str, variant: str, qualities: int = len(LAMBDAS)) -> BiSICConfig:
    """The network sizes of a named preset (`nn.presets.PRESETS`) for `variant`, with `qualities` levels."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    return BiSICConfig(slices=DEFAULT_SLICES[variant], qualities=qualities, **PRESETS[preset])


@dataclass
class TrainConfig:
    variant: str = "bisic-fast"
    preset: str = DEFAULT_PRESET
    out: Path = Path("runs/bisic-fast")
    photos: list[Path] = field(default_factory=list)  # folders of single photos (synthetic stereo)
    stereo: list[Path] = field(default_factory=list)  # folders of real stereo pairs (any layout)
    steps: int = 100_000
    batch: int = 8
    crop: int = 256
    lr: float = 1e-4
    aux_lr: float = 1e-3
    lr_milestones: tuple[float, ...] = (0.8, 0.95)  # fractions of `steps` where the lr halves
    warmup: int = 300  # steps of linear lr warm-up: fresh Adam moments make the first steps large
    clip: float = 1.0
    seed: int = 0
    workers: int = 2
    device: str = "cpu"
    val_fraction: float = 0.05
    val_items: int = 16
    checkpoint_every: int = 100
    val_every: int = 500
    log_every: int = 10
    init_from: Path | None = None  # warm start: tensors of equal name and shape from another run
    entropy_from: Path | None = None  # then the variant's own entropy model from weights of the same variant
    bf16: bool = False  # mixed precision: transforms in bfloat16, likelihoods in float32
    ema_decay: float = 0.999  # exported weights: exponential moving average of the trained ones
    freeze: str = "none"  # "shared": train only the variant's own entropy model (see SHARED_PREFIXES)
    lambdas: tuple[float, ...] = LAMBDAS  # level q's lambda; a source trained with others has its gains re-spread


def rd_loss(out: dict, x: torch.Tensor, lambdas: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch's mean rate-distortion loss (`nn.losses.rate_distortion`) and its bpp, MSE and
    PSNR (mean of the views')."""
    stats = rate_distortion(out, x, lambdas)
    mse = stats["mse"].detach()
    psnr = 10 * torch.log10(1 / mse.clamp_min(1e-10))
    return {"loss": stats["loss"].mean(), "bpp": stats["bpp"].mean().detach(), "mse": mse.mean(), "psnr": psnr.mean()}


class _StepData(Dataset):
    """Keys (step, index) -> the base item drawn for that step: batches depend on the step only."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        step, index = key
        for ds in getattr(self.base, "datasets", [self.base]):
            ds.set_epoch(step)
        return self.base[index]


class _StepSampler:
    """Batch sampler: for each step from `start`, the rank's share of that step's draw."""

    def __init__(self, n: int, batch: int, seed: int, start: int, stop: int, rank: int, world: int) -> None:
        self.n, self.batch, self.seed = n, batch, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world

    def __iter__(self):
        for step in range(self.start, self.stop):
            idx = np.random.default_rng([self.seed, step]).integers(0, self.n, self.batch * self.world)
            yield [(step, int(i)) for i in idx[self.rank :: self.world]]

    def __len__(self) -> int:
        return self.stop - self.start


def step_qualities(seed: int, step: int, batch: int, rank: int, world: int, levels: int) -> torch.Tensor:
    """The quality level of each item of a step (this rank's share): a function of the step, so resume is exact."""
    q = np.random.default_rng([seed, step, 1]).integers(0, levels, batch * world)
    return torch.from_numpy(q[rank::world]).long()


def build_datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset]:
    """(train, validation) from synthetic pairs of photos and any real stereo pairs."""
    train_sets, val_sets = [], []
    photos = [p for root in cfg.photos for p in photo_paths(Path(root))]
    if photos:
        tr, va = split_train_val(photos, cfg.val_fraction, cfg.seed)
        train_sets.append(SyntheticStereoDataset(tr, cfg.crop, seed=cfg.seed))
        val_sets.append(SyntheticStereoDataset(va, cfg.crop, seed=cfg.seed + 1))
    pairs = [p for root in cfg.stereo for p in find_pairs(Path(root))]
    if pairs:
        tr, va = split_train_val(pairs, cfg.val_fraction, cfg.seed)
        train_sets.append(StereoPairDataset(tr, cfg.crop, seed=cfg.seed))
        if va:
            val_sets.append(StereoPairDataset(va, cfg.crop, seed=cfg.seed + 1))
    if not train_sets:
        raise RunError("no training data: pass --photos and/or --stereo folders with images")
    return ConcatDataset(train_sets), ConcatDataset(val_sets) if val_sets else ConcatDataset(train_sets)


def apply_freeze(model: BiSICBase, freeze: str) -> None:
    """Mark the parameters that `freeze` keeps fixed as not requiring gradients."""
    if freeze not in FREEZE_CHOICES:
        raise ValueError(f"unknown freeze option {freeze!r} (choose from {', '.join(FREEZE_CHOICES)})")
    for name, p in model.named_parameters():
        p.requires_grad_(not (freeze == "shared" and name.startswith(SHARED_PREFIXES)))


def main_parameter_names(model: BiSICBase) -> list[str]:
    """The parameters the main optimiser trains, in its order (the quantiles have their own)."""
    return [n for n, p in model.named_parameters() if p.requires_grad and not n.endswith("entropy_bottleneck.quantiles")]


def make_optimizers(model: BiSICBase, cfg: TrainConfig) -> tuple[torch.optim.Adam, torch.optim.Adam, torch.optim.lr_scheduler.LambdaLR]:
    """The main optimiser (with its warm-up and step schedule) and the quantiles' own optimiser."""
    aux_params = [model.hyperprior.entropy_bottleneck.quantiles]
    params = dict(model.named_parameters())
    opt = torch.optim.Adam([params[n] for n in main_parameter_names(model)], lr=cfg.lr)
    aux = torch.optim.Adam(aux_params, lr=cfg.aux_lr)
    milestones = sorted({max(1, int(f * cfg.steps)) for f in cfg.lr_milestones})

    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup > 0 else 1.0
        return ramp * 0.5 ** sum(step >= m for m in milestones)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return opt, aux, sched


def _plain(v):
    """Paths as strings, so checkpoints load with weights_only=True."""
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


class WeightAverage:
    """Exponential moving average of the trainable parameters: the weights that get exported.

    Single steps move noisy weights by more than they improve them (two exports 410 steps apart
    differed by 0.2 dB on one pair); the average over the last ~1/(1 - decay) steps does not.
    The decay ramps up as (1 + n) / (10 + n) so that a fresh average is not dominated by its start.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.params = {n: p.detach().clone() for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        keep = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, p in model.named_parameters():
            if p.requires_grad:
                self.params[name].lerp_(p.detach(), 1 - keep)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "params": self.params}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = state["decay"], int(state["updates"])
        for name, value in state["params"].items():
            self.params[name].copy_(value)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Run `model` with the averaged weights for the duration of the block (validation)."""
        saved = {n: p.detach().clone() for n, p in model.named_parameters()}
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(self.params[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(saved[n])


def save_checkpoint(path: Path, model: BiSICBase, opt: torch.optim.Optimizer, aux: torch.optim.Optimizer,
                    sched: torch.optim.lr_scheduler.LRScheduler, step: int, cfg: TrainConfig, prior_steps: int = 0,
                    average: WeightAverage | None = None) -> None:
    """`prior_steps`: the steps the warm-start source had seen, so exported weights count them all."""
    state = {
        "format": "stereocodec-train-1",
        "variant": model.variant,
        "model_config": asdict(model.config),
        "train_config": {k: _plain(v) for k, v in asdict(cfg).items()},
        "model": model.state_dict(),
        "average": average.state_dict() if average is not None else None,
        "optimizer": opt.state_dict(),
        "aux_optimizer": aux.state_dict(),
        "lr_scheduler": sched.state_dict(),
        "step": step,
        "prior_steps": prior_steps,
        "torch_rng": torch.get_rng_state(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """A run's training state, tensors only (no pickled code is executed)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def run_config(state: dict) -> BiSICConfig:
    """The network sizes of a training checkpoint (sizes added since it was written take their defaults)."""
    return BiSICConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["model_config"].items()})


def steps_seen(state: dict) -> int:
    """Training steps behind a checkpoint's model: its own and those of the run it was warm-started from."""
    return int(state["step"]) + int(state.get("prior_steps", 0))


def run_lambdas(state: dict) -> tuple[float, ...]:
    """The lambdas a training checkpoint's run used (runs from before they were recorded: the paper's)."""
    return checked_lambdas(state["train_config"].get("lambdas", PAPER_LAMBDAS))


@torch.no_grad()
def spread_gains(model: BiSICBase, lambdas: Sequence[float] = LAMBDAS) -> None:
    """Start level q's latent gain at sqrt(lambda_q / 1024) (its inverse after quantisation).

    The step size that balances rate and MSE scales as 1/sqrt(lambda); starting there gives
    six distinct, ordered levels from the first step instead of waiting for equal gains to drift apart.
    """
    g = torch.sqrt(torch.tensor(lambdas, dtype=torch.float32) / 1024)[:, None].to(model.gain.device)
    model.gain.copy_(g.expand_as(model.gain))
    model.inv_gain.copy_((1 / g).expand_as(model.inv_gain))


def respread_table(table: torch.Tensor, old: Sequence[float], new: Sequence[float], power: float) -> torch.Tensor:
    """Gain rows for levels at lambdas `new` from rows trained at lambdas `old` (both increasing).

    A lambda the source was trained at keeps its row bit for bit; one between two of them takes
    the rows' blend, linear in log gain against log lambda; one beyond the ends takes the end row
    times (lambda / its lambda) ** power: 1/2 for the gain, -1/2 for its inverse, since the step
    that balances rate and MSE scales as 1/sqrt(lambda) (as `spread_gains`).
    """
    old = np.asarray(old, dtype=np.float64)
    log_old = np.log(old)
    log_table = torch.log(table.detach().abs().double())
    rows = []
    for lam in new:
        at = np.flatnonzero(old == float(lam))
        if at.size:
            rows.append(table[int(at[0])].detach().clone())
            continue
        x = float(np.log(lam))
        if x < log_old[0] or x > log_old[-1]:
            end = 0 if x < log_old[0] else len(old) - 1
            row = log_table[end] + power * (x - log_old[end])
        else:
            hi = int(np.searchsorted(log_old, x))
            t = (x - log_old[hi - 1]) / (log_old[hi] - log_old[hi - 1])
            row = (1 - t) * log_table[hi - 1] + t * log_table[hi]
        rows.append(torch.exp(row).to(table.dtype))
    return torch.stack(rows)


@torch.no_grad()
def respread_gains(params: dict[str, torch.Tensor], old: Sequence[float], new: Sequence[float]) -> None:
    """Re-spread the level gains in `params` (a model's parameters or their moving average) from a
    run trained at lambdas `old` to lambdas `new`, so that the run goes on at the new levels."""
    for name, power in (("gain", 0.5), ("inv_gain", -0.5)):
        params[name].copy_(respread_table(params[name], old, new, power))


def warm_start(model: BiSICBase, source: Path, lambdas: Sequence[float] = LAMBDAS) -> tuple[str, int]:
    """Start from a training checkpoint (its moving average) or from shipped .safetensors weights;
    optimiser state and step start afresh. A narrower network of the same variant is grown into
    this one without changing what it computes (`grow`); another variant (BiSIC from BiSIC-Fast)
    gives every tensor whose name and shape match. Gains trained at other lambdas than `lambdas`
    are re-spread to them (`respread_gains`). Returns a log line and the source's steps."""
    theirs, steps, their_lambdas = _source_network(source)
    mine = model.state_dict()
    if type(theirs) is type(model) and theirs.config != model.config and can_grow(theirs.config, model.config):
        carried = grow(theirs, model)
        message = (f"warm start from {source} ({steps} steps): grown from {theirs.config.y_channels} to "
                   f"{model.config.y_channels} latent channels and from {theirs.config.mid_channels} to "
                   f"{model.config.mid_channels} mid channels, {carried} of {len(mine)} tensors carried")
        gains_carried = True
    else:
        shared = {k: v for k, v in theirs.state_dict().items() if k in mine and mine[k].shape == v.shape}
        model.load_state_dict(shared, strict=False)
        message = f"warm start from {source} ({steps} steps): {len(shared)} of {len(mine)} tensors"
        gains_carried = "gain" in shared
    if gains_carried and their_lambdas != tuple(lambdas):
        respread_gains(dict(model.named_parameters()), their_lambdas, lambdas)
        message += f"; level gains re-spread from lambdas {_lambda_list(their_lambdas)} to {_lambda_list(lambdas)}"
    return message, steps


def _source_network(source: Path) -> tuple[BiSICBase, int, tuple[float, ...]]:
    """The network of a warm-start source (a checkpoint's moving average, or shipped weights in
    float32), the steps behind it and the lambdas it was trained at."""
    if source.suffix == ".safetensors":
        loaded = load_weights(source)
        return (loaded.model.float(), int(loaded.metadata.get("training_steps", 0)),
                checked_lambdas(loaded.metadata.get("lambdas", PAPER_LAMBDAS)))
    state = load_checkpoint(source)
    return averaged_model(state), steps_seen(state), run_lambdas(state)


@torch.no_grad()
def take_entropy_model(model: BiSICBase, source: Path) -> str:
    """Copy the variant's own entropy model (every tensor outside SHARED_PREFIXES: context, channel
    context, LRP, entropy parameters) from `source`, a network of the same variant, so that BiSIC
    trained on earlier transforms starts from its trained entropy model on new ones. Returns a log line."""
    theirs, steps, _ = _source_network(source)
    if theirs.variant != model.variant:
        raise RunError(f"{source} holds a {theirs.variant} network, not {model.variant}: its entropy model does not fit")
    mine, their_sd = model.state_dict(), theirs.state_dict()
    own = [n for n, _ in model.named_parameters() if not n.startswith(SHARED_PREFIXES)]
    misfits = [n for n in own if n not in their_sd or their_sd[n].shape != mine[n].shape]
    if misfits:
        raise RunError(f"{source}: its entropy model has other sizes ({misfits[0]} and {len(misfits) - 1} more)")
    model.load_state_dict({n: their_sd[n] for n in own}, strict=False)
    return f"entropy model from {source} ({steps} steps): {len(own)} tensors"


@torch.no_grad()
def grow_run(source: Path, out: Path, preset: str) -> str:
    """Write into `out` the run of checkpoint `source` grown into `preset` (`grow`): the grown
    network, its moving average and Adam's moments carry on, with step, schedule and noise state,
    so that `train --out OUT --preset PRESET` goes on as one run. Only widths whose old channels
    come first can grow so (not the latent width: that grows through --init-from). Returns a log line."""
    target = out / CHECKPOINT_NAME
    if target.exists():
        raise FileExistsError(f"{target} exists: grow into a folder without a checkpoint")
    state = load_checkpoint(source)
    old_config = run_config(state)
    config = preset_config(preset, state["variant"], old_config.qualities)
    if config.y_channels != old_config.y_channels or not can_grow(old_config, config):
        raise GrowthError(f"the {state['train_config']['preset']} run in {source} does not grow into the "
                          f"{preset} preset as one run (only wider mid and hidden layers do)")
    torch.manual_seed(int(state["step"]))  # the new channels' first weights
    old = build_model(state["variant"], old_config)
    old.load_state_dict(state["model"])
    model = build_model(state["variant"], config)
    carried = grow(old, model)
    average = copy.deepcopy(model)  # the average's new entries start where the weights do
    if state.get("average"):
        grow(averaged_model(state), average)
    cfg = dict(state["train_config"], preset=preset, out=str(out))
    apply_freeze(model, cfg.get("freeze", "none"))
    names = main_parameter_names(model)
    optimizer = copy.deepcopy(state["optimizer"])
    shapes = dict(model.named_parameters())
    for index, moments in optimizer["state"].items():
        shape = shapes[names[index]].shape
        for key, fill in (("exp_avg", 0.0), ("exp_avg_sq", None)):
            if moments[key].shape != shape:
                moments[key] = _leading_block(moments[key], shape, fill)
    grown = dict(state, model_config=asdict(config), train_config=cfg, model=model.state_dict(), optimizer=optimizer,
                 average=dict(state["average"], params={n: p.detach().clone() for n, p in average.named_parameters()})
                 if state.get("average") else None)
    out.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    torch.save(grown, tmp)
    os.replace(tmp, target)
    return (f"grew {source} (step {steps_seen(state)}) from {state['train_config']['preset']} into {preset}: "
            f"{carried} tensors carried, {sum(p.numel() for p in model.parameters()):,} parameters; "
            f"resume with train --out {out} --preset {preset}")


def _leading_block(old: torch.Tensor, shape: torch.Size, fill: float | None) -> torch.Tensor:
    """A moment tensor of `shape` holding `old` in its leading block (where `grow` put the old
    channels) and `fill` elsewhere (None: the mean of `old`, a typical second moment)."""
    grown = torch.full(shape, float(old.mean()) if fill is None else fill, dtype=old.dtype)
    grown[tuple(slice(0, n) for n in old.shape)] = old
    return grown


def _lambda_list(lambdas: Sequence[float]) -> str:
    return ", ".join(f"{float(v):g}" for v in lambdas)


def validation_items(val: Dataset, n: int) -> torch.Tensor:
    """n fixed held-out items, shared out evenly between the sources (synthetic and real pairs);
    a source with fewer items than its share gives further crops of them (later epochs)."""
    sources = [ds for ds in getattr(val, "datasets", [val]) if len(ds)]
    items = []
    for i, ds in enumerate(sources):
        share = n // len(sources) + (i < n % len(sources))
        for j in range(share):
            ds.set_epoch(1_000_000 + j // len(ds))
            items.append(ds[j % len(ds)])
    return torch.stack(items)


@torch.no_grad()
def validate(model: BiSICBase, items: torch.Tensor, lambdas: Sequence[float], batch: int = 4) -> list[dict]:
    """Estimated bpp and PSNR per quality level on fixed held-out items (eval forward)."""
    model.eval()
    rows = []
    for q, lam in enumerate(lambdas):
        parts = []
        for chunk in items.split(batch):
            stats = rd_loss(model(chunk, torch.full((len(chunk),), q, device=chunk.device)), chunk,
                            torch.tensor(float(lam)))
            parts.append((len(chunk), stats))
        mean = {k: sum(n * float(st[k]) for n, st in parts) / len(items) for k in parts[0][1]}
        rows.append({"quality": q, "lambda": lam, **mean})
    model.train()
    return rows


class _StopRequest:
    """SIGINT / SIGTERM finish the current step and save a checkpoint instead of losing work."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True


def _ignore_stop_signals(worker_id: int) -> None:
    """Data workers leave SIGINT / SIGTERM to the main process, which finishes the step and saves;
    Ctrl-C and `timeout` signal the whole process group, and a killed worker would lose the step."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def rd_gradients(net: nn.Module, model: BiSICBase, x: torch.Tensor, q: torch.Tensor, lambdas: torch.Tensor,
                 bf16: bool) -> dict[str, torch.Tensor]:
    """Forward and backward of the RD loss in the given precision; leaves the gradients in `.grad`."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = net(x, q)
    stats = rd_loss(out | {"x_hat": out["x_hat"].float()}, x, lambdas)
    model.zero_grad(set_to_none=True)
    stats["loss"].backward()
    return stats


def gradients_finite(params: list[torch.Tensor]) -> bool:
    """True when every gradient is finite: a step with NaN or inf is skipped, never taken."""
    grads = [p.grad for p in params if p.grad is not None]
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()) if grads else True


def compare_precisions(model: BiSICBase, x: torch.Tensor, q: torch.Tensor, lambdas: torch.Tensor,
                       min_cosine: float = 0.95) -> tuple[bool, str]:
    """Does a bfloat16 step give the float32 step's gradients here?

    bfloat16 3-D convolutions on CPUs without AMX (oneDNN's AVX512-bf16 path) give NaN or
    wrong weight gradients from the first step, so mixed precision is only trusted where, on
    the same batch and quantisation noise, every parameter's gradient is finite and points the
    way the float32 one does (cosine >= min_cosine). Returns (ok, a line saying what was found).
    The model's gradients are cleared afterwards and the torch RNG is left as it was.
    """
    grads = {}
    rng = torch.get_rng_state()
    for bf16 in (False, True):
        torch.set_rng_state(rng)
        rd_gradients(model, model, x, q, lambdas, bf16)
        grads[bf16] = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    torch.set_rng_state(rng)
    model.zero_grad(set_to_none=True)
    worst, worst_name = 1.0, ""
    for name, g32 in grads[False].items():
        g16 = grads[True][name]
        if not torch.isfinite(g16).all():
            return False, f"bfloat16 gradients do not match float32 (the gradient of {name} is not finite)"
        if g32.norm() == 0:
            continue
        cosine = float(torch.nn.functional.cosine_similarity(g32.flatten(), g16.flatten(), dim=0))
        if cosine < worst:
            worst, worst_name = cosine, name
    ok = worst >= min_cosine
    return ok, f"bfloat16 gradients {'match' if ok else 'do not match'} float32 (lowest cosine {worst:.3f}, {worst_name})"


def train_step(net: torch.nn.Module, model: BiSICBase, x: torch.Tensor, q: torch.Tensor, lambdas: torch.Tensor,
               opt: torch.optim.Optimizer, aux: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
               cfg: TrainConfig, distributed: bool = False,
               average: WeightAverage | None = None) -> dict[str, float]:
    """One step on the RD loss and one on the quantile loss; `net` is `model` or its DDP wrapper.

    A step whose gradients are not all finite changes no weight (row["skipped"] is 1); the lr
    schedule still advances, so that the step count and the schedule stay one.
    """
    stats = rd_gradients(net, model, x, q, lambdas, cfg.bf16)
    params = [p for p in model.parameters() if p.requires_grad]
    finite = gradients_finite(params) and bool(torch.isfinite(stats["loss"]))
    if finite:
        torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        if average is not None:
            average.update(model)
    with warnings.catch_warnings():
        if not finite:  # a skipped step advances the schedule without an optimiser step: torch warns, on purpose here
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        sched.step()
    quantiles = model.hyperprior.entropy_bottleneck.quantiles
    aux_loss = model.aux_loss()
    aux.zero_grad(set_to_none=True)
    if quantiles.requires_grad:
        aux_loss.backward()
        if distributed:
            dist.all_reduce(quantiles.grad)
            quantiles.grad /= dist.get_world_size()
        if torch.isfinite(quantiles.grad).all():
            aux.step()
    return {k: float(v.detach()) for k, v in stats.items()} | {
        "aux": float(aux_loss.detach()), "lr": opt.param_groups[0]["lr"], "skipped": int(not finite)}


def train(cfg: TrainConfig, log: Callable[[str], None] = print, progress: Callable[[int, dict], None] | None = None) -> Path:
    """Train (or resume) the run in cfg.out; returns the checkpoint path."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world = 0, 1
    if distributed:
        dist.init_process_group("nccl" if cfg.device == "cuda" else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(cfg.device if cfg.device != "cuda" else f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = cfg.out / CHECKPOINT_NAME

    torch.manual_seed(cfg.seed)
    lambdas = checked_lambdas(cfg.lambdas)
    model = build_model(cfg.variant, preset_config(cfg.preset, cfg.variant, len(lambdas))).to(device).train()
    spread_gains(model, lambdas)
    start = prior_steps = 0
    state = load_checkpoint(ckpt_path) if ckpt_path.exists() else None
    if state is not None:
        if state["variant"] != cfg.variant or run_config(state) != model.config:
            raise RunError(f"{ckpt_path} belongs to another variant, preset or number of levels; use another --out")
        model.load_state_dict(state["model"])
        if not cfg.init_from:  # a resumed run still names the weights it started from (export's reference)
            cfg = replace(cfg, init_from=state["train_config"].get("init_from"))
    elif cfg.init_from:
        message, prior_steps = warm_start(model, Path(cfg.init_from), lambdas)
        log(message)
    if state is None and cfg.entropy_from:
        log(take_entropy_model(model, Path(cfg.entropy_from)))
    apply_freeze(model, cfg.freeze)
    opt, aux, sched = make_optimizers(model, cfg)
    average = WeightAverage(model, cfg.ema_decay)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        aux.load_state_dict(state["aux_optimizer"])
        sched.load_state_dict(state["lr_scheduler"])
        if state.get("average"):
            average.load_state_dict(state["average"])
        start, prior_steps = int(state["step"]), int(state.get("prior_steps", 0))
        torch.set_rng_state(state["torch_rng"])
        log(f"resumed {ckpt_path} at step {start}")
        trained_at = run_lambdas(state)
        if trained_at != lambdas:
            for params in (dict(model.named_parameters()), average.params):
                respread_gains(params, trained_at, lambdas)
            log(f"level gains re-spread from lambdas {_lambda_list(trained_at)} to {_lambda_list(lambdas)}")
    if distributed:  # each rank draws its own quantisation noise, reproducibly from (seed, rank, start)
        torch.manual_seed(cfg.seed * 1_000_003 + start * world + rank)

    net = model
    if distributed:
        model._ddp_params_and_buffers_to_ignore = ["hyperprior.entropy_bottleneck.quantiles"]
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    train_set, val_set = build_datasets(cfg)
    sampler = _StepSampler(len(train_set), cfg.batch, cfg.seed, start, cfg.steps, rank, world)
    loader = DataLoader(_StepData(train_set), batch_sampler=sampler, num_workers=cfg.workers,
                        persistent_workers=cfg.workers > 0, pin_memory=device.type == "cuda",
                        worker_init_fn=_ignore_stop_signals,
                        generator=torch.Generator().manual_seed(cfg.seed))  # keep the global RNG for the noise
    lambdas_all = torch.tensor(lambdas, dtype=torch.float32, device=device)
    val_items = validation_items(val_set, cfg.val_items).to(device) if rank == 0 and cfg.val_every else None
    stop = _StopRequest()
    t0, step = time.time(), start
    for step, x in enumerate(loader, start=start + 1):
        x = x.to(device, non_blocking=True)
        q = step_qualities(cfg.seed, step - 1, cfg.batch, rank, world, len(lambdas)).to(device)
        if cfg.bf16 and step == start + 1:
            ok, message = compare_precisions(model, x, q, lambdas_all[q])
            log(message + ("" if ok else "; training in float32"))
            cfg.bf16 = ok
        row = train_step(net, model, x, q, lambdas_all[q], opt, aux, sched, cfg, distributed, average)
        if row["skipped"] and rank == 0:
            log(f"step {step} skipped: non-finite gradient (loss {row['loss']:.4f})")
        if progress and rank == 0:
            progress(step, row)
        if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps):
            dt = (time.time() - t0) / (step - start)
            log(f"step {step} loss {row['loss']:.4f} bpp {row['bpp']:.4f} psnr {row['psnr']:.2f} "
                f"aux {row['aux']:.1f} lr {row['lr']:.2e} {dt:.2f}s/step")
        if rank == 0 and (step % cfg.checkpoint_every == 0 or step == cfg.steps or stop.requested):
            save_checkpoint(ckpt_path, model, opt, aux, sched, step, cfg, prior_steps, average)
        if stop.requested:
            log(f"stopped at step {step} on request; checkpoint saved")
            break
        if val_items is not None and step % cfg.val_every == 0:
            with average.applied(model):
                rows = validate(model, val_items, lambdas)
            for r in rows:
                log(f"val step {step} q{r['quality']} lambda {r['lambda']:g} bpp {r['bpp']:.4f} psnr {r['psnr']:.2f} loss {r['loss']:.4f}")
            log(f"val step {step} mean loss {sum(r['loss'] for r in rows) / len(rows):.4f} (moving average, {len(val_items)} items)")
    if distributed:
        dist.destroy_process_group()
    return ckpt_path


def averaged_model(state: dict) -> BiSICBase:
    """The network a training checkpoint describes, with its moving-average weights where it has them
    (what export writes and what validation measures), not the last step's noisy ones."""
    model = build_model(state["variant"], run_config(state))
    model.load_state_dict(state["model"])
    if state.get("average"):
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(state["average"]["params"][name])
    return model.eval()


def run_reference(state: dict, checkpoint: Path | None = None) -> Path | None:
    """The shipped weights a run warm-started from, when still on disk: tensors it left unchanged
    (a `--freeze` run's) are exported in that file's stored form, byte for byte. A relative path
    is tried from here and from the folder the run was started in (found from `checkpoint` and
    the run's relative --out), so that export works from any folder."""
    source = state["train_config"].get("init_from")
    if not source or Path(source).suffix != ".safetensors":
        return None
    candidates = [Path(source)]
    out = Path(state["train_config"].get("out") or ".")
    if checkpoint is not None and not Path(source).is_absolute() and not out.is_absolute():
        started_in = checkpoint.resolve().parent
        for _ in out.parts:
            started_in = started_in.parent
        candidates.append(started_in / source)
    return next((path for path in candidates if path.is_file()), None)


def export_weights(checkpoint: Path, out: Path, name: str | None = None, extra: dict | None = None,
                   encoding: str = "float16", reference: Path | None = None) -> dict:
    """Write shipped weights (safetensors in `encoding`, with metadata) from a training checkpoint.

    Tensors equal to those of `reference` (default: `run_reference`) keep its stored form. Returns
    the metadata written, plus the `encoding`, the `reference` used and how many tensors it `kept`."""
    state = load_checkpoint(checkpoint)
    model = averaged_model(state)
    tc = state["train_config"]
    steps = steps_seen(state)
    reference = reference if reference is not None else run_reference(state, checkpoint)
    meta = {
        "name": name or f"stereo-codec {tc['preset']} {state['variant']} step {steps}",
        "preset": tc["preset"],
        "quality_levels": len(run_lambdas(state)),
        "lambdas": list(run_lambdas(state)),
        "training_steps": steps,
        "training_batch": tc["batch"],
        "training_crop": tc["crop"],
        "training_data": {"photos": tc["photos"], "stereo": tc["stereo"]},
        "date": date.today().isoformat(),
        **(extra or {}),
    }
    kept = save_weights(model, out, meta, encoding, reference)
    return {**meta, "encoding": encoding, "kept": kept, "reference": str(reference) if reference else None}

"""Training: a tiny preset trains, checkpoints, resumes exactly, and exports shipped weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import need_shared, run_cli
from stereocodec.train.loop import TrainConfig, export_weights, train
from stereocodec.weights import load_weights


def _config(out: Path, photos: Path, steps: int) -> TrainConfig:
    return TrainConfig(
        variant="bisic-fast", preset="tiny", out=out, photos=[photos], steps=steps, batch=2, crop=64,
        workers=0, lr_milestones=(), checkpoint_every=1, val_every=0, log_every=1000,
    )


def _losses(cfg: TrainConfig) -> dict[int, float]:
    seen: dict[int, float] = {}
    train(cfg, log=lambda _: None, progress=lambda step, row: seen.__setitem__(step, row["loss"]))
    return seen


def test_resume_gives_the_same_next_loss(tmp_path: Path) -> None:
    photos = need_shared("data", "photos")
    straight = _losses(_config(tmp_path / "a", photos, 3))
    first = _losses(_config(tmp_path / "b", photos, 2))
    resumed = _losses(_config(tmp_path / "b", photos, 3))
    assert list(first) == [1, 2] and list(resumed) == [3]
    assert first[2] == straight[2]
    assert resumed[3] == straight[3]
    assert straight[1] != straight[3]  # the network did change


def test_export_loads_as_variable_rate_weights(tmp_path: Path) -> None:
    photos = need_shared("data", "photos")
    train(_config(tmp_path / "run", photos, 1), log=lambda _: None)
    meta = export_weights(tmp_path / "run" / "checkpoint.pt", tmp_path / "w.safetensors", name="tiny test")
    assert meta["training_steps"] == 1 and meta["quality_levels"] == 6
    loaded = load_weights(tmp_path / "w.safetensors")
    assert loaded.name == "tiny test" and loaded.model.config.qualities == 6
    assert loaded.model.variant == "bisic-fast"
    assert next(iter(loaded.model.state_dict().values())).dtype == torch.float32


def test_training_goes_on_from_shipped_weights(tmp_path: Path) -> None:
    """--init-from a .safetensors file: every tensor comes from it (float16 values, in float32)."""
    from stereocodec.nn.models import build_model
    from stereocodec.train.loop import preset_config, warm_start

    photos = need_shared("data", "photos")
    train(_config(tmp_path / "run", photos, 1), log=lambda _: None)
    export_weights(tmp_path / "run" / "checkpoint.pt", tmp_path / "w.safetensors")
    model = build_model("bisic-fast", preset_config("tiny", "bisic-fast"))
    message, steps = warm_start(model, tmp_path / "w.safetensors")
    assert steps == 1
    shipped = load_weights(tmp_path / "w.safetensors").model.state_dict()
    assert f"{len(shipped)} of {len(shipped)} tensors" in message
    assert all(torch.equal(v, shipped[k]) for k, v in model.state_dict().items())


def test_cli_train_refuses_bad_crop(tmp_path: Path) -> None:
    proc = run_cli("train", "--out", tmp_path, "--photos", tmp_path, "--crop", "100")
    assert proc.returncode != 0 and "multiple of 64" in proc.stderr


@pytest.mark.parametrize("lambdas", ["64,32,128", "0,5", "64,x"])
def test_cli_train_refuses_lambdas_that_are_not_positive_and_increasing(tmp_path: Path, lambdas: str) -> None:
    proc = run_cli("train", "--out", tmp_path / "run", "--photos", tmp_path, "--lambdas", lambdas)
    assert proc.returncode == 1 and proc.stderr.startswith("error: --lambdas") and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option", ["--log-every", "--checkpoint-every", "--batch", "--steps", "--workers"])
def test_cli_train_refuses_counts_out_of_range(tmp_path: Path, option: str) -> None:
    """A count of 0 (or -1 workers) used to end as "internal error" (a division by zero) mid-run."""
    proc = run_cli("train", "--out", tmp_path / "run", "--photos", tmp_path, option, "-1" if option == "--workers" else "0")
    assert proc.returncode == 1 and proc.stderr.startswith(f"error: Invalid value for '{option}'")
    assert len(proc.stderr.splitlines()) == 1 and not (tmp_path / "run").exists()


def test_respread_keeps_trained_levels_and_blends_the_others() -> None:
    from stereocodec.train.loop import respread_table

    table = torch.tensor([[1.0, 2.0], [4.0, 2.0], [9.0, 3.0]])
    new = respread_table(table, (100, 400, 1600), (25, 100, 200, 1600, 6400), power=0.5)
    assert torch.equal(new[1], table[0]) and torch.equal(new[3], table[2])  # trained lambdas: bit for bit
    assert torch.allclose(new[2], torch.tensor([2.0, 2.0]))  # halfway in log lambda: geometric mean of rows
    assert torch.allclose(new[0], table[0] / 2) and torch.allclose(new[4], table[2] * 2)  # beyond: sqrt(lambda)
    inverse = respread_table(1 / table, (100, 400, 1600), (25, 100, 200, 1600, 6400), power=-0.5)
    assert torch.allclose(new * inverse, torch.ones(1))  # a gain and its inverse stay inverses


def test_a_run_resumed_at_other_lambdas_goes_on_at_them(tmp_path: Path) -> None:
    """Resuming with new lambdas re-spreads the gains (model and moving average) and records the lambdas;
    with lr 0 the checkpoint holds exactly the re-spread gains."""
    from stereocodec.nn.presets import LAMBDAS, PAPER_LAMBDAS
    from stereocodec.train.loop import load_checkpoint, respread_table

    photos = need_shared("data", "photos")
    paper = _config(tmp_path / "run", photos, 1)
    paper.lambdas, paper.lr = PAPER_LAMBDAS, 0.0
    train(paper, log=lambda _: None)
    before = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    ours = _config(tmp_path / "run", photos, 2)
    ours.lr = 0.0
    lines: list[str] = []
    train(ours, log=lines.append)
    after = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert any("re-spread from lambdas 256, 512" in line for line in lines)
    assert tuple(after["train_config"]["lambdas"]) == LAMBDAS
    for name, power in (("gain", 0.5), ("inv_gain", -0.5)):
        expected = respread_table(before["model"][name], PAPER_LAMBDAS, LAMBDAS, power)
        assert torch.equal(after["model"][name], expected)
        assert torch.equal(after["average"]["params"][name], respread_table(before["average"]["params"][name],
                                                                            PAPER_LAMBDAS, LAMBDAS, power))
    meta = export_weights(tmp_path / "run" / "checkpoint.pt", tmp_path / "w.safetensors")
    assert meta["lambdas"] == list(LAMBDAS)


@pytest.mark.parametrize("workers", [0, 1])
def test_sigterm_saves_a_checkpoint(tmp_path: Path, workers: int) -> None:
    """The signal goes to the whole process group, as Ctrl-C and `timeout` send it."""
    import os
    import signal
    import subprocess
    import sys

    photos = need_shared("data", "photos")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stereocodec", "train", "--preset", "tiny", "--out", str(tmp_path), "--photos", str(photos),
         "--steps", "1000", "--batch", "1", "--crop", "64", "--workers", str(workers), "--device", "cpu", "--log-every", "1",
         "--checkpoint-every", "1000", "--val-every", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("step 2 "):
            os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, "".join(lines)
    assert any("stopped at step" in ln for ln in lines)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert 2 <= state["step"] < 1000


def test_a_new_run_starts_with_ordered_quality_levels() -> None:
    """Levels start at gains sqrt(lambda / 1024): lower levels spend fewer estimated bits."""
    from stereocodec.nn.models import build_model
    from stereocodec.train.loop import preset_config, spread_gains

    torch.manual_seed(0)
    model = build_model("bisic-fast", preset_config("tiny", "bisic-fast")).eval()
    spread_gains(model)
    assert torch.all(model.gain[1:] > model.gain[:-1]) and torch.allclose(model.gain * model.inv_gain, torch.ones(1))
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)), size=(64, 64))
    x = torch.stack([base, base.roll(2, dims=-1)], dim=2)  # (1, 3, 2, 64, 64)
    with torch.no_grad():
        bits = [sum(-torch.log2(lk).sum() for lk in model(x, q)["likelihoods"].values()) for q in (0, 5)]
    assert bits[0] < bits[1]


def test_float16_weights_keep_the_constant_bounds(tmp_path: Path) -> None:
    """1e-9 is 0 in float16: a likelihood bound read back from the file would give log(0) = -inf
    within a few steps of training on from shipped weights."""
    from stereocodec.nn.entropy_models import LIKELIHOOD_BOUND, SCALE_BOUND

    photos = need_shared("data", "photos")
    train(_config(tmp_path / "run", photos, 1), log=lambda _: None)
    export_weights(tmp_path / "run" / "checkpoint.pt", tmp_path / "w.safetensors")
    bounds = {k: v for k, v in load_weights(tmp_path / "w.safetensors").model.state_dict().items()
              if k.endswith("bound")}
    assert bounds and all(v.item() == pytest.approx(SCALE_BOUND if "scale" in k else LIKELIHOOD_BOUND,
                                                    rel=1e-6) for k, v in bounds.items())
    cfg = _config(tmp_path / "on", photos, 4)
    cfg.init_from = tmp_path / "w.safetensors"
    assert all(torch.isfinite(torch.tensor(loss)) for loss in _losses(cfg).values())
    meta = export_weights(tmp_path / "on" / "checkpoint.pt", tmp_path / "w2.safetensors")
    assert meta["training_steps"] == 1 + 4  # the source's step counts too


def test_mixed_precision_keeps_rates_in_float32() -> None:
    """--bf16 runs the transforms in bfloat16; likelihoods stay float32 (bfloat16's 8-bit mantissa
    cannot carry quantisation noise or tail probabilities)."""
    from stereocodec.nn.entropy_models import FactorizedPrior, GaussianConditional

    prior, gaussian = FactorizedPrior(8).eval(), GaussianConditional().eval()
    z, y = 3 * torch.randn(1, 8, 4, 4), 3 * torch.randn(1, 8, 4, 4)
    means, scales = y.bfloat16() + 0.3, y.abs().bfloat16() + 0.2  # what bfloat16 networks predict
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = prior(z)[1], gaussian(y, scales, means)
    assert torch.equal(mixed[0], prior(z)[1])
    assert torch.equal(mixed[1], gaussian(y, scales.float(), means.float()))


def _tiny_step_inputs(preset: str = "tiny-wide"):
    from stereocodec.nn.models import build_model
    from stereocodec.nn.presets import LAMBDAS
    from stereocodec.train.loop import preset_config, spread_gains

    torch.manual_seed(0)
    model = build_model("bisic-fast", preset_config(preset, "bisic-fast")).train()
    spread_gains(model)
    base = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)), size=(64, 64))
    x = torch.stack([base, base.roll(3, dims=-1)], dim=2)  # (2, 3, 2, 64, 64)
    q = torch.tensor([0, 5])
    return model, x, q, torch.tensor(LAMBDAS, dtype=torch.float32)[q]


def test_gradients_are_finite_and_bf16_is_used_only_where_it_matches_float32(tmp_path: Path) -> None:
    """float32 gradients are finite; bfloat16 is trusted only where its gradients match them (on CPUs
    without AMX its 3-D convolution gradients are NaN or wrong), else training falls back to float32."""
    from stereocodec.train.loop import compare_precisions, rd_gradients

    model, x, q, lambdas = _tiny_step_inputs()
    rd_gradients(model, model, x, q, lambdas, bf16=False)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 100 and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    rng = torch.get_rng_state()
    ok, message = compare_precisions(model, x, q, lambdas)
    assert torch.equal(torch.get_rng_state(), rng) and all(p.grad is None for p in model.parameters())
    assert ("do not match" in message) != ok

    photos = need_shared("data", "photos")
    lines: list[str] = []
    cfg = _config(tmp_path / "mixed", photos, 2)
    cfg.bf16 = True
    mixed = {}
    train(cfg, log=lines.append, progress=lambda step, row: mixed.__setitem__(step, row["loss"]))
    assert any("bfloat16 gradients" in ln for ln in lines)
    if not ok:  # this machine refuses bf16: the run is the float32 run
        assert mixed == _losses(_config(tmp_path / "full", photos, 2))


def test_a_step_with_a_non_finite_gradient_changes_nothing() -> None:
    from stereocodec.train.loop import TrainConfig, WeightAverage, make_optimizers, train_step

    model, x, q, lambdas = _tiny_step_inputs()
    cfg = TrainConfig(preset="tiny-wide", warmup=0)
    opt, aux, sched = make_optimizers(model, cfg)
    average = WeightAverage(model, 0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = x.clone()
    x[0, 0, 0, 5, 5] = float("nan")
    row = train_step(model, model, x, q, lambdas, opt, aux, sched, cfg, average=average)
    assert row["skipped"] == 1 and average.updates == 0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.endswith("quantiles"))
    row = train_step(model, model, x.nan_to_num(0.5), q, lambdas, opt, aux, sched, cfg, average=average)
    assert row["skipped"] == 0 and average.updates == 1
    assert not torch.equal(before["Conv3DEncoder_A.0.weight"], model.state_dict()["Conv3DEncoder_A.0.weight"])


def test_freeze_shared_trains_only_the_variants_own_entropy_model() -> None:
    from stereocodec.train.loop import SHARED_PREFIXES, TrainConfig, apply_freeze, make_optimizers, train_step

    model, x, q, lambdas = _tiny_step_inputs()
    apply_freeze(model, "shared")
    cfg = TrainConfig(preset="tiny-wide", warmup=0, freeze="shared")
    opt, aux, sched = make_optimizers(model, cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_step(model, model, x, q, lambdas, opt, aux, sched, cfg)
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    shared = {n for n in before if n.startswith(SHARED_PREFIXES)}
    assert shared and not (changed & shared)
    own = set(before) - shared
    assert {n.split(".")[0] for n in changed} == {n.split(".")[0] for n in own}


def test_export_writes_the_moving_average_and_a_wide_network_loads_back(tmp_path: Path) -> None:
    photos = need_shared("data", "photos")
    cfg = _config(tmp_path / "run", photos, 3)
    cfg.preset, cfg.ema_decay = "tiny-wide", 0.5
    train(cfg, log=lambda _: None)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["average"]["updates"] == 3
    export_weights(tmp_path / "run" / "checkpoint.pt", tmp_path / "w.safetensors")
    loaded = load_weights(tmp_path / "w.safetensors").model
    assert loaded.config.latent == 48 and loaded.config.N == 16 and loaded.config.context == 16
    name = "Conv3DEncoder_B.2.weight"
    exported = loaded.state_dict()[name]
    assert torch.allclose(exported, state["average"]["params"][name].half().float())
    assert not torch.allclose(exported, state["model"][name].half().float())


def test_lower_bound_passes_gradients_that_push_upwards() -> None:
    """compressai's lower bound: below the bound, a gradient that would raise x still flows."""
    from stereocodec.nn.entropy_models import LowerBound

    bound = LowerBound(0.11)
    x = torch.tensor([0.05, 0.05, 0.5], requires_grad=True)
    out = bound(x)
    assert torch.equal(out.detach(), torch.tensor([0.11, 0.11, 0.5]))
    (out * torch.tensor([-1.0, 1.0, 1.0])).sum().backward()  # loss falls as x[0] rises, rises with x[1]
    assert torch.equal(x.grad, torch.tensor([-1.0, 0.0, 1.0]))


def test_validation_mixes_synthetic_and_real_items(tmp_path: Path) -> None:
    from stereocodec.train.loop import build_datasets, validation_items

    cfg = TrainConfig(photos=[need_shared("data", "photos")], stereo=[need_shared("data", "stereo-train")], crop=64)
    _, val = build_datasets(cfg)
    items = validation_items(val, 16)
    assert items.shape == (16, 3, 2, 64, 64)
    assert len({tuple(t.flatten()[:64].tolist()) for t in items}) == 16  # all different


def test_a_run_grown_into_a_wider_preset_goes_on_as_one_run(tmp_path: Path) -> None:
    """grow-run: same network output and moving average, Adam's moments and step carried on."""
    from stereocodec.train.loop import averaged_model, load_checkpoint

    photos = need_shared("data", "photos")
    cfg = _config(tmp_path / "run", photos, 2)
    cfg.preset = "tiny-wide"
    train(cfg, log=lambda _: None)
    source = tmp_path / "run" / "checkpoint.pt"
    grown_dir = tmp_path / "mid"
    proc = run_cli("grow-run", source, "--preset", "tiny-wide-mid", "--out", grown_dir, check=True)
    assert "into tiny-wide-mid" in proc.stdout
    old, new = load_checkpoint(source), load_checkpoint(grown_dir / "checkpoint.pt")
    assert new["step"] == old["step"] == 2 and new["train_config"]["preset"] == "tiny-wide-mid"
    x = torch.rand(1, 3, 2, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        before, after = averaged_model(old)(x, 3), averaged_model(new)(x, 3)
    assert averaged_model(new).config.mid_channels == 32
    torch.testing.assert_close(after["x_hat"], before["x_hat"], atol=1e-5, rtol=0)
    moments = [(o, n) for o, n in zip(old["optimizer"]["state"].values(), new["optimizer"]["state"].values())
               if o["exp_avg"].shape != n["exp_avg"].shape]
    assert len(moments) == 6  # the four weights and two biases that are mid channels wide
    for o, n in moments:
        block = tuple(slice(0, s) for s in o["exp_avg"].shape)
        assert torch.equal(n["exp_avg"][block], o["exp_avg"]) and torch.equal(n["exp_avg_sq"][block], o["exp_avg_sq"])
        assert n["exp_avg_sq"].min() > 0  # new entries start at a typical second moment, not at zero
    cfg = _config(grown_dir, photos, 3)
    cfg.preset = "tiny-wide-mid"
    assert list(_losses(cfg)) == [3]
    again = run_cli("grow-run", source, "--preset", "tiny-wide-mid", "--out", grown_dir)
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr
    narrower = run_cli("grow-run", source, "--preset", "tiny", "--out", tmp_path / "tiny")
    assert narrower.returncode == 1 and "does not grow" in narrower.stderr
    assert not (tmp_path / "tiny").exists()


def test_bisic_takes_new_transforms_from_bisic_fast_and_its_entropy_model_from_an_earlier_bisic(tmp_path: Path) -> None:
    """--init-from FAST --entropy-from BISIC: shared tensors from FAST, the rest from BISIC."""
    from stereocodec.nn.models import build_model
    from stereocodec.train.loop import SHARED_PREFIXES, preset_config, take_entropy_model, warm_start

    photos = need_shared("data", "photos")
    for variant in ("bisic-fast", "bisic"):
        cfg = _config(tmp_path / variant, photos, 1)
        cfg.variant, cfg.seed = variant, len(variant)
        train(cfg, log=lambda _: None)
        export_weights(tmp_path / variant / "checkpoint.pt", tmp_path / f"{variant}.safetensors")
    model = build_model("bisic", preset_config("tiny", "bisic"))
    warm_start(model, tmp_path / "bisic-fast.safetensors")
    line = take_entropy_model(model, tmp_path / "bisic.safetensors")
    assert "entropy model from" in line
    fast = load_weights(tmp_path / "bisic-fast.safetensors").model.state_dict()
    bisic = load_weights(tmp_path / "bisic.safetensors").model.state_dict()
    params = dict(model.named_parameters())
    shared = [n for n in params if n.startswith(SHARED_PREFIXES)]
    own = [n for n in params if not n.startswith(SHARED_PREFIXES)]
    assert shared and own and "chan_SAM.rb1.conv1.weight" in own  # tensors both variants have count as own
    assert all(torch.equal(params[n], fast[n]) for n in shared)
    assert all(torch.equal(params[n], bisic[n]) for n in own)
    assert not torch.equal(fast["chan_SAM.rb1.conv1.weight"], bisic["chan_SAM.rb1.conv1.weight"])
    proc = run_cli("train", "--variant", "bisic", "--preset", "tiny", "--out", tmp_path / "wrong", "--photos", photos,
                   "--init-from", tmp_path / "bisic-fast.safetensors", "--entropy-from", tmp_path / "bisic-fast.safetensors",
                   "--steps", "1", "--batch", "2", "--crop", "64", "--workers", "0")
    assert proc.returncode == 1 and "holds a bisic-fast network" in proc.stderr and "Traceback" not in proc.stderr

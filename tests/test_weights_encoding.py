"""Weights encodings: int8 rows load back to exact, machine-independent values; unchanged tensors
keep a reference file's bytes (what keeps a --freeze run's export a small git delta)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import need_shared, run_cli
from stereocodec.nn.models import build_model
from stereocodec.train.loop import SHARED_PREFIXES, TrainConfig, preset_config, train
from stereocodec.weights import SCALE_SUFFIX, STEPS_SUFFIX, WeightsError, load_weights, save_weights


def _model(variant: str = "bisic-fast", seed: int = 0):
    torch.manual_seed(seed)
    return build_model(variant, preset_config("tiny", variant)).eval()


def test_int8_rows_load_as_codes_times_scales(tmp_path: Path) -> None:
    model = _model()
    save_weights(model, tmp_path / "w16.safetensors", {"name": "f16"})
    save_weights(model, tmp_path / "w8.safetensors", {"name": "i8"}, encoding="int8")
    stored = load_file(tmp_path / "w8.safetensors")
    loaded = load_weights(tmp_path / "w8.safetensors").model.state_dict()
    rows = [n for n, t in model.state_dict().items() if n.endswith(".weight") and t.ndim >= 2]
    assert rows and all(stored[n].dtype == torch.int8 and stored[n + SCALE_SUFFIX].dtype == torch.float32 for n in rows)
    for name in rows:
        codes, scale = stored[name], stored[name + SCALE_SUFFIX]
        assert codes.abs().amax(dim=tuple(range(1, codes.ndim))).max() == 127  # each row's largest value is exact
        assert torch.equal(loaded[name], codes.float() * scale.reshape(-1, *[1] * (codes.ndim - 1)))
        err = (loaded[name] - model.state_dict()[name]).abs().reshape(codes.shape[0], -1).amax(1)
        assert (err <= scale * (0.5 + 1e-4)).all()  # half a step, plus float32 rounding
    others = [n for n in stored if n not in rows and not n.endswith(SCALE_SUFFIX)]
    assert others and all(stored[n].dtype == torch.float16 for n in others if stored[n].is_floating_point())
    assert (tmp_path / "w8.safetensors").stat().st_size < 0.65 * (tmp_path / "w16.safetensors").stat().st_size
    assert load_weights(tmp_path / "w8.safetensors").fingerprint == load_weights(tmp_path / "w8.safetensors").fingerprint


def test_unchanged_tensors_keep_the_reference_files_bytes(tmp_path: Path) -> None:
    save_weights(_model(), tmp_path / "ref.safetensors", {"name": "ref"}, encoding="int8")
    before = load_weights(tmp_path / "ref.safetensors").model.state_dict()
    model = load_weights(tmp_path / "ref.safetensors").model
    with torch.no_grad():
        model.Conv3DEncoder_A[0].weight.add_(0.01)
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, before[n])}
    kept = save_weights(model, tmp_path / "new.safetensors", {"name": "new"}, encoding="float16", reference=tmp_path / "ref.safetensors")
    ref, new = load_file(tmp_path / "ref.safetensors"), load_file(tmp_path / "new.safetensors")
    assert changed == {"Conv3DEncoder_A.0.weight"}
    assert kept == sum(not n.endswith(SCALE_SUFFIX) for n in ref) - 1
    for name, t in new.items():
        base = name.removesuffix(SCALE_SUFFIX)
        if base in changed:
            assert t.dtype == torch.float16 and name == base
        else:
            assert t.dtype == ref[name].dtype and torch.equal(t, ref[name])
    assert torch.equal(load_weights(tmp_path / "new.safetensors").model.state_dict()[next(iter(changed))],
                       model.state_dict()[next(iter(changed))].half().float())


def test_a_freeze_run_exports_the_shared_tensors_as_its_source_stored_them(tmp_path: Path, monkeypatch) -> None:
    """BiSIC trained on int8 BiSIC-Fast weights with --freeze shared: its export, in float16, holds the
    shared tensors as the same int8 codes and scales (the export finds the source by the run's --init-from,
    which a resumed run keeps, also when that path is relative and export runs from another folder)."""
    photos = need_shared("data", "photos")
    base = dict(preset="tiny", photos=[photos], batch=2, crop=64, workers=0, lr_milestones=(),
                checkpoint_every=1, val_every=0, log_every=1000)
    train(TrainConfig(variant="bisic-fast", out=tmp_path / "fast", steps=1, **base), log=lambda _: None)
    source = tmp_path / "fast.safetensors"
    proc = run_cli("export", tmp_path / "fast" / "checkpoint.pt", source, "--encoding", "int8", check=True)
    assert "int8" in proc.stdout
    monkeypatch.chdir(tmp_path)  # the run names its paths relative to where it was started
    train(TrainConfig(variant="bisic", out=Path("runs/bisic"), steps=2, freeze="shared", init_from=Path(source.name),
                      **base), log=lambda _: None)
    # resumed without --init-from, as a run resumed in a later session is: it still knows its source
    train(TrainConfig(variant="bisic", out=Path("runs/bisic"), steps=3, freeze="shared", **base), log=lambda _: None)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    proc = run_cli("export", tmp_path / "runs" / "bisic" / "checkpoint.pt", tmp_path / "bisic.safetensors", check=True)
    assert "kept as stored in" in proc.stdout and f"{source.name}" in proc.stdout
    src, out = load_file(source), load_file(tmp_path / "bisic.safetensors")
    shared = [n for n in out if n.startswith(SHARED_PREFIXES)]
    assert any(out[n].dtype == torch.int8 for n in shared)
    assert all(torch.equal(out[n], src[n]) and out[n].dtype == src[n].dtype for n in shared)
    own = [n for n in out if not n.startswith(SHARED_PREFIXES)]
    assert own and all(out[n].dtype == torch.float16 for n in own if out[n].is_floating_point())
    assert load_weights(tmp_path / "bisic.safetensors").model.variant == "bisic"


def _trained_on(model, amount: float = 0.02, seed: int = 1):
    """`model` moved a little, as a short run moves shipped weights (every tensor, some by more than a step)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for t in model.parameters():
            t.add_(amount * t.abs().mean() * torch.randn_like(t))
    return model


def test_int8_delta_loads_the_values_of_plain_int8_and_is_smaller(tmp_path: Path) -> None:
    import zlib

    save_weights(_model(), tmp_path / "base.safetensors", {"name": "base"})
    model = _trained_on(load_weights(tmp_path / "base.safetensors").model)
    save_weights(model, tmp_path / "plain.safetensors", {"name": "new"}, encoding="int8")
    save_weights(model, tmp_path / "delta.safetensors", {"name": "new"}, encoding="int8-delta",
                 reference=tmp_path / "base.safetensors")
    plain, delta = load_weights(tmp_path / "plain.safetensors"), load_weights(tmp_path / "delta.safetensors")
    assert delta.fingerprint == plain.fingerprint  # the very values of the int8 form, bit for bit
    assert delta.metadata["base"]["file"] == "base.safetensors" and delta.metadata["encoding"] == "int8-delta"
    stored = load_file(tmp_path / "delta.safetensors")
    steps = [n for n in stored if n.endswith(STEPS_SUFFIX)]
    assert steps and all(stored[n].dtype == torch.int8 for n in steps)
    compressed = {k: len(zlib.compress((tmp_path / f"{k}.safetensors").read_bytes(), 6)) for k in ("plain", "delta")}
    assert compressed["delta"] < 0.8 * compressed["plain"], compressed


def test_int8_delta_needs_its_exact_base(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    save_weights(_model(), tmp_path / "store" / "base.safetensors", {"name": "base"})
    model = _trained_on(load_weights(tmp_path / "store" / "base.safetensors").model)
    save_weights(model, tmp_path / "delta.safetensors", {"name": "new"}, encoding="int8-delta",
                 reference=tmp_path / "store" / "base.safetensors")
    with pytest.raises(WeightsError, match=r"count from the weights file base\.safetensors .*neither beside it nor in the weights store"):
        load_weights(tmp_path / "delta.safetensors")
    found = load_weights(tmp_path / "delta.safetensors", search=(tmp_path / "store",))  # as the store is searched
    (tmp_path / "base.safetensors").write_bytes(b"not these weights")  # a namesake with other bytes is passed over
    assert load_weights(tmp_path / "delta.safetensors", search=(tmp_path / "store",)).fingerprint == found.fingerprint
    with pytest.raises(WeightsError, match="int8-delta counts from a reference"):
        save_weights(model, tmp_path / "x.safetensors", {"name": "x"}, encoding="int8-delta")


def test_an_export_against_an_int8_delta_reference(tmp_path: Path) -> None:
    """A run warm-started from a shipped int8-delta file: its int8-delta export counts from that file's whole
    base (bases never chain) and keeps the steps of tensors the run left unchanged; a plain int8 export
    re-encodes those tensors whole (their steps mean nothing without the base) and still loads."""
    save_weights(_model(), tmp_path / "base.safetensors", {"name": "base"})
    first = _trained_on(load_weights(tmp_path / "base.safetensors").model)
    save_weights(first, tmp_path / "first.safetensors", {"name": "first"}, encoding="int8-delta",
                 reference=tmp_path / "base.safetensors")
    model = load_weights(tmp_path / "first.safetensors").model
    before = {n: t.clone() for n, t in model.state_dict().items()}
    with torch.no_grad():
        model.Conv3DEncoder_A[0].weight.add_(0.01)
    moved = "Conv3DEncoder_A.0.weight"
    stored_first = load_file(tmp_path / "first.safetensors")

    delta = tmp_path / "second-delta.safetensors"
    kept = save_weights(model, delta, {"name": "second"}, encoding="int8-delta", reference=tmp_path / "first.safetensors")
    loaded = load_weights(delta)
    assert loaded.metadata["base"]["file"] == "base.safetensors"
    assert kept == len([n for n in before if n in stored_first or n + STEPS_SUFFIX in stored_first]) - 1
    stored = load_file(delta)
    kept_steps = [n for n in stored_first if n.endswith(STEPS_SUFFIX) and n != moved + STEPS_SUFFIX]
    assert kept_steps and all(torch.equal(stored[n], stored_first[n]) for n in kept_steps)
    assert moved + STEPS_SUFFIX in stored and not torch.equal(stored[moved + STEPS_SUFFIX], stored_first[moved + STEPS_SUFFIX])
    values = loaded.model.state_dict()
    assert all(torch.equal(values[n], before[n]) for n in before if n != moved)
    scale = stored[moved + SCALE_SUFFIX].reshape(-1, *[1] * (values[moved].ndim - 1))
    assert ((values[moved] - model.state_dict()[moved]).abs() <= scale * (0.5 + 1e-4)).all()

    plain = tmp_path / "second-int8.safetensors"
    save_weights(model, plain, {"name": "second"}, encoding="int8", reference=tmp_path / "first.safetensors")
    assert not [n for n in load_file(plain) if n.endswith(STEPS_SUFFIX)] and "base" not in load_weights(plain).metadata
    values = load_weights(plain).model.state_dict()
    assert all(torch.allclose(values[n], before[n], rtol=0, atol=1e-6 * before[n].abs().max().item() + 1e-12)
               for n in before if n != moved and before[n].is_floating_point() and before[n].numel())


@pytest.mark.parametrize("damage, says", [
    ("steps as float16", "do not fit the base tensor"),
    ("whole and steps", "stored both whole and as int8 steps"),
    ("steps without scale", "has no :scale scale"),
])
def test_damaged_int8_delta_is_refused_in_one_line(tmp_path: Path, damage: str, says: str) -> None:
    import json

    from safetensors.torch import save_file

    save_weights(_model(), tmp_path / "base.safetensors", {"name": "base"})
    model = _trained_on(load_weights(tmp_path / "base.safetensors").model)
    good = tmp_path / "delta.safetensors"
    save_weights(model, good, {"name": "new"}, encoding="int8-delta", reference=tmp_path / "base.safetensors")
    tensors = load_file(good)
    name = next(n for n in tensors if n.endswith(STEPS_SUFFIX))
    owner = name.removesuffix(STEPS_SUFFIX)
    if damage == "steps as float16":
        tensors[name] = tensors[name].half()
    elif damage == "whole and steps":
        tensors[owner] = tensors[name].clone()
    else:
        del tensors[owner + SCALE_SUFFIX]
    with open(good, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, bad, metadata=header["__metadata__"])
    with pytest.raises(WeightsError) as e:
        load_weights(bad)
    assert str(e.value).startswith(f"{bad}: ") and says in str(e.value) and "\n" not in str(e.value)

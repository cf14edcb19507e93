"""Weights errors: one complete line saying what the file is and what to do."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import ROOT
from stereocodec.weights import WeightsError, load_weights

EXPECTED = "expected a release .pth/.pth.tar checkpoint or a stereo-codec .safetensors file)"


def refusal(path) -> str:
    with pytest.raises(WeightsError) as e:
        load_weights(path)
    message = str(e.value)
    assert "\n" not in message and len(message) < 400
    return message


@pytest.mark.parametrize("name", ["notes.txt", "model.safetensors", "model.pth"])
def test_text_file(tmp_path, name) -> None:
    path = tmp_path / name
    path.write_text("these are not weights\n")
    assert refusal(path) == f"{path}: is a text file, not weights ({EXPECTED}"  # was: IndexError


def test_json_file(tmp_path) -> None:
    path = tmp_path / "config.pth"
    path.write_text(json.dumps({"variant": "bisic", "N": 192}))
    assert refusal(path) == f"{path}: is a JSON file, not weights ({EXPECTED}"  # was: cut mid-sentence


def test_empty_file_and_sbic(tmp_path) -> None:
    (tmp_path / "empty.pth").write_bytes(b"")
    assert "is empty, not weights" in refusal(tmp_path / "empty.pth")
    sbic = ROOT / "tests" / "data" / "store" / "bisic-step20920.sbic"
    assert "is a .sbic file (an encoded pair), not weights" in refusal(sbic)


def test_training_checkpoint_names_export(tmp_path) -> None:
    """A checkpoint as train.save_checkpoint writes it (format, step, model, optimizer state...)."""
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "stereocodec-train-1", "variant": "bisic-fast", "step": 1200, "prior_steps": 300,
                "model": {"gain": torch.ones(6, 4)}, "optimizer": {"state": {}, "param_groups": []}}, path)
    message = refusal(path)
    assert message == (f"{path} is a stereo-codec training checkpoint (step 1500), not weights; "
                       f"make weights from it with `stereo-codec export {path} weights.safetensors`")


def test_pickled_objects_are_refused_not_run(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"weights": torch.ones(2), "callback": print}, path)
    assert "holds Python objects besides tensors" in refusal(path)


def test_truncated_checkpoint(tmp_path) -> None:
    path = tmp_path / "cut.pth"
    torch.save({"a.weight": torch.ones(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:300])
    message = refusal(path)
    assert message.startswith(f"{path}: a damaged or unsupported PyTorch checkpoint (")
    assert message.endswith(")")


@pytest.mark.parametrize("damage, says", [
    ("no scale", "has no :scale scale"),
    ("short scale", "expected (48,) float32"),
    ("nan scale", "negative or non-finite scale"),
    ("stray scale", "belongs to no tensor"),
    ("float with scale", "has a scale but is not int8"),
])
def test_damaged_int8_rows(tmp_path, damage, says) -> None:
    from safetensors.torch import load_file, save_file

    from stereocodec.nn.models import build_model
    from stereocodec.train.loop import preset_config
    from stereocodec.weights import SCALE_SUFFIX, save_weights

    good = tmp_path / "good.safetensors"
    save_weights(build_model("bisic-fast", preset_config("tiny", "bisic-fast")), good, {"name": "tiny"}, encoding="int8")
    tensors = load_file(good)
    name = "Conv3DEncoder_A.0.weight"
    assert tensors[name].dtype == torch.int8 and tensors[name].shape[0] == 48
    if damage == "no scale":
        del tensors[name + SCALE_SUFFIX]
    elif damage == "short scale":
        tensors[name + SCALE_SUFFIX] = tensors[name + SCALE_SUFFIX][:4].contiguous()
    elif damage == "nan scale":
        tensors[name + SCALE_SUFFIX][2] = float("nan")
    elif damage == "stray scale":
        tensors["nothing" + SCALE_SUFFIX] = torch.ones(3)
    else:
        tensors[name] = tensors[name].half()
    bad = tmp_path / "bad.safetensors"
    with open(good, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    save_file(tensors, bad, metadata=header["__metadata__"])
    message = refusal(bad)
    assert message.startswith(f"{bad}: ") and says in message

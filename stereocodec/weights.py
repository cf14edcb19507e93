"""Loading and saving network weights: release checkpoints and our safetensors files.

A checkpoint is untrusted input: release files are read with `weights_only=True`, every
tensor is checked by name and shape, and failures are one-line `WeightsError`s.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .errors import StereoCodecError, first_line
from .io.images import atomic_write
from .nn.entropy_models import CONSTANT_BOUNDS, DERIVED_BUFFERS
from .nn.models import BiSICBase, BiSICConfig, build_model
from .nn.presets import ENCODINGS, VARIANTS

METADATA_KEY = "stereocodec"
SCALE_SUFFIX = ":scale"  # an int8 tensor's float32 row scales are stored under its name plus this
STEPS_SUFFIX = ":steps"  # int8-delta: a tensor's codes stored as steps from its base's codes on the same scales
BASE_KEY = "base"  # int8-delta metadata: {"file": name, "sha256": hex} of the whole weights file the steps count from


class WeightsError(StereoCodecError):
    """A weights file that cannot be used; the message is one line."""


@dataclass(frozen=True)
class LoadedWeights:
    model: BiSICBase
    name: str  # human label stored in .sbic files
    fingerprint: bytes  # sha256 of the network's tensors, as loaded (float32)
    metadata: dict

    @cached_property
    def legacy_fingerprints(self) -> tuple[bytes, ...]:
        """How files written by the first versions of the format named these weights: they hashed the
        constant bounds as the weights file held them (float16 in ours, float32 in release checkpoints).
        Hashed on first need only, and once: current files match `fingerprint`."""
        return tuple(fingerprint(self.model, d) for d in (torch.float16, torch.float32))

    def made(self, fp: bytes) -> bool:
        """Whether a file carrying this fingerprint was encoded with these weights."""
        return fp == self.fingerprint or fp in self.legacy_fingerprints


def _is_derived_buffer(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in DERIVED_BUFFERS


def _read_release(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        if "Weights only load failed" in str(e):
            raise WeightsError(f"{path}: the checkpoint holds Python objects besides tensors; refused, as loading them could run code") from None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
        raise WeightsError(f"{path}: a damaged or unsupported PyTorch checkpoint ({first[:200]})") from None
    except Exception as e:  # a file crafted against torch's unpickler: still one line
        raise WeightsError(f"{path}: a damaged PyTorch checkpoint ({type(e).__name__})") from None
    if isinstance(obj, dict) and str(obj.get("format", "")).startswith("stereocodec-train"):
        raise WeightsError(
            f"{path} is a stereo-codec training checkpoint (step {int(obj.get('step', 0)) + int(obj.get('prior_steps', 0))}), not weights; "
            f"make weights from it with `stereo-codec export {path} weights.safetensors`"
        )
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: a PyTorch file but not a checkpoint (expected a state dict of tensors)")
    # checkpoints saved from DataParallel / DistributedDataParallel prefix every name
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


_EXPECTED = "expected a release .pth/.pth.tar checkpoint or a stereo-codec .safetensors file"


def _kind(path: Path) -> str:
    """What a weights file is by its first bytes, "safetensors" or "torch"; anything else is
    refused in one line saying what it is (a text or JSON file, say)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(head) >= 9 and head[8:9] == b"{":  # u64 header length, then the JSON header
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch's zip format, or its legacy pickle
        return "torch"
    if not head:
        raise WeightsError(f"{path}: is empty, not weights ({_EXPECTED})")
    if head[:4] == b"SBIC":
        raise WeightsError(f"{path}: is a .sbic file (an encoded pair), not weights ({_EXPECTED})")
    if b"\0" not in head:
        text = head.decode("utf-8", errors="replace").lstrip()
        what = "a JSON file" if text[:1] in ("{", "[") else "a text file"
        raise WeightsError(f"{path}: is {what}, not weights ({_EXPECTED})")
    raise WeightsError(f"{path}: not a weights file ({_EXPECTED})")


def _read_safetensors(path: Path, search: Sequence[Path] = ()) -> tuple[dict[str, torch.Tensor], dict]:
    """The file's tensors as every machine loads them (int8 rows multiplied out) and its metadata."""
    read = _read_values(path, search)
    return read.values, read.meta


@dataclass(frozen=True)
class _ReadWeights:
    """A weights file as stored and as the values it stands for; for an int8-delta file, also the
    whole file its steps count from and that file's values."""

    stored: dict[str, torch.Tensor]
    values: dict[str, torch.Tensor]
    meta: dict
    base_path: Path | None = None
    base_values: dict[str, torch.Tensor] | None = None


def _read_values(path: Path, search: Sequence[Path] = ()) -> _ReadWeights:
    """Read `path`. An int8-delta file's base is looked for beside it, then in the `search` folders
    (the weights store)."""
    stored, meta = _read_stored(path)
    base_path = base_values = None
    if BASE_KEY in meta:
        base_path = find_base(path, meta[BASE_KEY], search)
        base_stored, base_meta = _read_stored(base_path)
        if BASE_KEY in base_meta:
            raise WeightsError(f"{path}: its base {base_path.name} is itself an int8-delta file; a base must be whole")
        try:
            base_values = decode_tensors(base_stored)
        except WeightsError as e:
            raise WeightsError(f"{base_path}: {e}") from None
    try:
        return _ReadWeights(stored, decode_tensors(stored, base_values), meta, base_path, base_values)
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}") from None


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def find_base(path: Path, base: object, search: Sequence[Path] = ()) -> Path:
    """The whole weights file an int8-delta file counts from: its name beside `path`, then in each
    `search` folder, taken only when its bytes have the recorded sha256."""
    if not (isinstance(base, dict) and isinstance(base.get("file"), str) and isinstance(base.get("sha256"), str)
            and Path(base["file"]).name == base["file"]):
        raise WeightsError(f"{path}: its {BASE_KEY!r} metadata is not a file name and sha256")
    for folder in (path.parent, *search):
        candidate = Path(folder) / base["file"]
        if candidate.is_file() and file_sha256(candidate) == base["sha256"]:
            return candidate
    raise WeightsError(f"{path}: its int8 steps count from the weights file {base['file']} "
                       f"(sha256 {base['sha256'][:12]}...), which is neither beside it nor in the weights store")


def _read_stored(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors exactly as the file stores them, and its stereocodec metadata."""
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({first_line(e)})") from None
    return tensors, read_metadata(path)


def read_metadata(path: Path) -> dict:
    """A safetensors weights file's stereocodec metadata, from its header alone: the store reads a
    default's int8-delta base this way without loading any tensor."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({first_line(e)})") from None
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        raise WeightsError(f"{path}: its stereocodec metadata is not valid JSON") from None


def _int8_rows(name: str, t: torch.Tensor) -> bool:
    """Convolution and linear weights (99.8 % of the parameters) are the tensors stored as int8 rows."""
    return name.endswith(".weight") and t.ndim >= 2 and t.is_floating_point()


def _base_codes(base: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """A base tensor's values on another tensor's row scales, rounded: what int8-delta steps count from.
    One float32 division and a round per value, so the same integers on every machine."""
    rows = base.float().reshape(base.shape[0], -1)
    return torch.round(rows / scale[:, None]).reshape(base.shape)


def encode_tensors(name: str, t: torch.Tensor, encoding: str, base: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """How one tensor is stored: `float32`, `float16`, or `int8` rows (for `_int8_rows` tensors: codes in
    -127..127 and one float32 scale per slice along the first axis, the rest as float16). Integer
    tensors stay as they are. `int8-delta` stores the same codes as steps from `base` (its value in
    the base file) put on the same scales: after a little more training most steps are 0 or +-1,
    which compress to about a third of the codes (git stores files compressed)."""
    t = t.detach().cpu()
    if not t.is_floating_point():
        return {name: t.contiguous()}
    t = t.float()
    if encoding in ("int8", "int8-delta") and _int8_rows(name, t):
        rows = t.reshape(t.shape[0], -1)
        scale = rows.abs().amax(1).clamp_min(torch.finfo(torch.float32).tiny) / 127
        codes = torch.round(rows / scale[:, None]).clamp(-127, 127).reshape(t.shape)
        if encoding == "int8-delta" and base is not None and base.shape == t.shape:
            steps = codes - _base_codes(base, scale)
            if steps.abs().max() <= 127:  # else (a tensor that moved far) its codes are stored whole
                return {name + STEPS_SUFFIX: steps.to(torch.int8).contiguous(), name + SCALE_SUFFIX: scale.contiguous()}
        return {name: codes.to(torch.int8).contiguous(), name + SCALE_SUFFIX: scale.contiguous()}
    return {name: (t if encoding == "float32" else t.half()).contiguous()}


def decode_tensors(stored: dict[str, torch.Tensor], base: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The values a file's tensors stand for. Int8 rows become codes times their float32 scale,
    computed in float32: the same values (and so the same fingerprint) on every machine. Int8 steps
    (int8-delta) are first added to the `base` file's values put on the same scales."""
    out = {}
    for name, t in stored.items():
        if name.endswith(SCALE_SUFFIX):
            owner = name[: -len(SCALE_SUFFIX)]
            if owner not in stored and owner + STEPS_SUFFIX not in stored:
                raise WeightsError(f"scale {name} belongs to no tensor")
            continue
        if name.endswith(STEPS_SUFFIX):
            name = name[: -len(STEPS_SUFFIX)]
            if name in stored:
                raise WeightsError(f"tensor {name} is stored both whole and as int8 steps")
            if base is None or name not in base:
                raise WeightsError(f"tensor {name} is stored as int8 steps but its base holds no {name}")
            if t.dtype != torch.int8 or base[name].shape != t.shape:
                raise WeightsError(f"int8 steps {name} of shape {tuple(t.shape)} ({str(t.dtype).removeprefix('torch.')}) "
                                   f"do not fit the base tensor of shape {tuple(base[name].shape)}")
            scale = _checked_scale(stored, name, t)
            codes = _base_codes(base[name], scale) + t.float()
            if not torch.isfinite(codes).all():
                raise WeightsError(f"int8 steps {name} do not fit their base on these scales")
            out[name] = codes * scale.reshape(-1, *[1] * (t.ndim - 1))
            continue
        if t.dtype == torch.int8:
            t = t.float() * _checked_scale(stored, name, t).reshape(-1, *[1] * (t.ndim - 1))
        elif name + SCALE_SUFFIX in stored:
            raise WeightsError(f"tensor {name} has a scale but is not int8")
        out[name] = t
    return out


def _checked_scale(stored: dict[str, torch.Tensor], name: str, t: torch.Tensor) -> torch.Tensor:
    """The float32 row scales of int8 tensor `name` (codes or steps `t`), refused unless well formed."""
    scale = stored.get(name + SCALE_SUFFIX)
    if scale is None:
        raise WeightsError(f"int8 tensor {name} has no {SCALE_SUFFIX} scale")
    if t.ndim < 2 or scale.dtype != torch.float32 or tuple(scale.shape) != (t.shape[0],):
        raise WeightsError(f"int8 tensor {name} of shape {tuple(t.shape)} has a scale of shape {tuple(scale.shape)} "
                           f"({str(scale.dtype).removeprefix('torch.')}); expected ({t.shape[0]},) float32")
    if not torch.isfinite(scale).all() or (scale < 0).any():
        raise WeightsError(f"int8 tensor {name} has a negative or non-finite scale")
    return scale


def _shape(sd: dict[str, torch.Tensor], name: str, dim: int = 0) -> int:
    if name not in sd:
        raise WeightsError(f"checkpoint is missing tensor {name}")
    return int(sd[name].shape[dim])


def infer_variant(sd: dict[str, torch.Tensor]) -> str | None:
    has_masked = "context_prediction_list.0.weight" in sd
    has_ckbd = "context_prediction_CKBD_list.0.weight" in sd
    if has_masked != has_ckbd:
        return "bisic" if has_masked else "bisic-fast"
    return None


def infer_config(sd: dict[str, torch.Tensor], variant: str) -> BiSICConfig:
    """Read N, M, slices, latent, mid and hidden widths off a state dict's tensor shapes."""
    ctx = "context_prediction_list" if variant == "bisic" else "context_prediction_CKBD_list"
    slices = sum(1 for k in sd if k.startswith(ctx + ".") and k.endswith(".weight"))
    ep = "entropy_parameters_zero_means" if variant == "bisic" else "entropy_params_nonanchor_zero_means"
    hidden = lambda prefix: tuple(_shape(sd, f"{prefix}.{i}.weight") for i in (0, 2, 4))  # noqa: E731
    N = _shape(sd, "Conv3DEncoder_A.0.weight")
    Y = _shape(sd, "Conv3DEncoder_B.2.weight")  # y's channels: N in the release, wider in our presets
    if slices < 2 or Y % slices:
        raise WeightsError(f"checkpoint has {slices} context slices, which does not fit a {variant} network of {Y} latent channels")
    C = _shape(sd, "chan_SAM.rb1.conv1.weight")
    latent = 0 if Y == N else Y
    mid = _shape(sd, "Conv3DEncoder_B.0.weight")  # the 1/8-resolution layers: N in the release
    default_context = BiSICConfig(N=N, slices=slices, latent=latent).ch_channels
    return BiSICConfig(
        N=N,
        M=_shape(sd, "hyperprior.hyper_encoder.0.weight"),
        slices=slices,
        ep_hidden=hidden(ep),
        lrp_hidden=hidden("LRP_Transform_zero"),
        cc_hidden=hidden("channel_context_prediction_list.0"),
        qualities=int(sd["gain"].shape[0]) if "gain" in sd else 0,
        latent=latent,
        context=0 if C == default_context else C,
        mid=0 if mid == N else mid,
    )


def fingerprint(model: torch.nn.Module, bounds: torch.dtype | None = None) -> bytes:
    """sha256 over every tensor's name, shape and float32 bytes: names the exact weights.

    With `bounds`, the constant bounds are hashed too, rounded through that dtype: the
    fingerprint the first versions wrote, when weights files still held the bounds.
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        leaf = name.rsplit(".", 1)[-1]
        if bounds is not None and leaf in CONSTANT_BOUNDS:
            t = t.to(bounds)
        elif _is_derived_buffer(name):
            continue
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.digest()


def model_from_state_dict(sd: dict[str, torch.Tensor], variant: str | None, source: str) -> BiSICBase:
    """Build the network a state dict describes and load it, checking every tensor."""
    found = infer_variant(sd)
    if variant is None:
        if found is None:
            raise WeightsError(f"{source}: cannot tell the variant from the tensors; pass --variant")
        variant = found
    if variant not in VARIANTS:
        raise WeightsError(f"unknown variant {variant!r}")
    if found is not None and found != variant:
        raise WeightsError(f"{source} holds a {found} network, not {variant}")
    try:
        config = infer_config(sd, variant)
        model = build_model(variant, config)
    except WeightsError as e:
        raise WeightsError(f"{source}: {e}") from None
    except (ValueError, RuntimeError) as e:
        raise WeightsError(f"{source}: inconsistent tensor shapes ({first_line(e)})") from None
    sd = dict(sd)
    expected = {k: v for k, v in model.state_dict().items() if not _is_derived_buffer(k)}
    given = {k: v for k, v in _rename_bottleneck(sd).items() if not _is_derived_buffer(k)}
    for name, t in expected.items():
        if name not in given:
            raise WeightsError(f"{source}: missing tensor {name}")
        if tuple(given[name].shape) != tuple(t.shape):
            raise WeightsError(
                f"{source}: tensor {name} has shape {tuple(given[name].shape)}, expected {tuple(t.shape)}"
            )
    for name in given:
        if name not in expected:
            raise WeightsError(f"{source}: unexpected tensor {name}")
    bad = [n for n, t in given.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise WeightsError(f"{source}: tensor {bad[0]} holds NaN or infinite values")
    model.load_state_dict({k: v.float() for k, v in given.items()}, strict=False)
    return model.eval()


def _rename_bottleneck(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map compressai's three factorized-prior naming styles onto the release's `_matrix{i}`."""
    out = {}
    prefix = "hyperprior.entropy_bottleneck."
    for k, v in sd.items():
        if k.startswith(prefix):
            rest = k[len(prefix):]
            for old, new in (("matrices", "_matrix"), ("biases", "_bias"), ("factors", "_factor")):
                for style in (f"_{old}.", f"{old}."):
                    if rest.startswith(style):
                        rest = new + rest[len(style):]
            k = prefix + rest
        out[k] = v
    return out


def load_weights(path: str | Path, variant: str | None = None, device: str | torch.device = "cpu",
                 search: Sequence[Path] = ()) -> LoadedWeights:
    """Load a release checkpoint (.pth/.pth.tar) or a stereo-codec .safetensors file (an int8-delta
    file's base is found beside it or in the `search` folders)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if _kind(path) == "safetensors":
        sd, meta = _read_safetensors(path, search)
        variant = variant or meta.get("variant")
    else:
        sd, meta = _read_release(path), {}
    model = model_from_state_dict(sd, variant, path.name)
    name = meta.get("name") or path.name
    return LoadedWeights(model.to(device), name, fingerprint(model), meta)


def save_weights(model: BiSICBase, path: str | Path, metadata: dict, encoding: str = "float16",
                 reference: Path | None = None) -> int:
    """Write our weight format: safetensors in `encoding` (see `encode_tensors`) with JSON metadata.

    Every tensor whose value equals its namesake in the `reference` weights file keeps that file's
    stored form byte for byte, so weights trained on top of shipped ones with some tensors frozen
    share those bytes with them (a small git delta, whatever the encodings). `int8-delta` counts
    from `reference`, or from its base when it is itself an int8-delta file (so a run warm-started
    from a delta file exports steps from the same whole file, and no file needs a chain of bases).
    Returns how many tensors kept the reference's form.
    """
    if encoding not in ENCODINGS:  # checked once, and also when every tensor keeps the reference's form
        raise WeightsError(f"unknown weights encoding {encoding!r} (choose from {', '.join(ENCODINGS)})")
    ref = _read_values(Path(reference)) if reference is not None else _ReadWeights({}, {}, {})
    stored_ref, decoded_ref, base_values = ref.stored, ref.values, ref.values
    if encoding == "int8-delta":
        if reference is None:
            raise WeightsError("int8-delta counts from a reference weights file (export --reference, a shipped whole file)")
        if ref.base_path is not None:  # the reference is itself a delta: count from its base, already read and checked
            base_values = ref.base_values
            base = {"file": ref.base_path.name, "sha256": ref.meta[BASE_KEY]["sha256"]}
        else:
            base = {"file": Path(reference).name, "sha256": file_sha256(Path(reference))}
        metadata = {**metadata, BASE_KEY: base}
    tensors, kept = {}, 0
    for name, t in model.state_dict().items():
        if _is_derived_buffer(name):
            continue
        mine, theirs = t.detach().cpu(), decoded_ref.get(name)
        # a reference's int8 steps stay valid only in a file that counts from the same base
        same_form = name + STEPS_SUFFIX not in stored_ref or encoding == "int8-delta"
        if (same_form and theirs is not None and theirs.shape == mine.shape
                and theirs.is_floating_point() == mine.is_floating_point() and torch.equal(theirs.to(mine.dtype), mine)):
            tensors.update({k: stored_ref[k] for k in (name, name + SCALE_SUFFIX, name + STEPS_SUFFIX) if k in stored_ref})
            kept += 1
        else:
            tensors.update(encode_tensors(name, t, encoding, base_values.get(name)))
    meta = {"variant": model.variant, "config": asdict(model.config), "encoding": encoding, **metadata}
    data = save(tensors, metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
    atomic_write(Path(path), lambda f: f.write(data))  # an interrupted export leaves no half file
    return kept

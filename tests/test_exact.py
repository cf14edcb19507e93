"""The exact entropy path (format v3): integer layers against a pure-integer reference, the
accumulator bounds, and files decoded in other environments (thread counts, SIMD kernels,
oneDNN ISA) in real subprocesses, which is where floating-point entropy models fail."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import need_shared, run_cli
from stereocodec.container import Container
from stereocodec.nn import integer as I
from stereocodec.nn.layers import EfficientAttention
from stereocodec.nn.models import anchor_mask, from_views, to_views
from stereocodec.store import default_entry, load_stored

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# Environments a decoder may run in: each changes float32 summation order or kernels.
ENVIRONMENTS = (
    {"OMP_NUM_THREADS": "1"},
    {"OMP_NUM_THREADS": "2"},
    {"OMP_NUM_THREADS": "4"},
    {"ATEN_CPU_CAPABILITY": "default"},
    {"ONEDNN_MAX_CPU_ISA": "SSE41"},
)
PIXEL_TOLERANCE = 2  # the float synthesis may move a decoded value by this much between machines (docs/format.md)


def _round_shift(acc: np.ndarray, e: np.ndarray) -> np.ndarray:
    """int64 reference of the requantisation: acc * 2^-e rounded half up, clamped."""
    out = np.empty_like(acc)
    for c in range(acc.shape[1]):
        k = int(e[c])
        out[:, c] = (acc[:, c] + (1 << (k - 1))) >> k if k > 0 else acc[:, c] << -k
    return np.clip(out, -I.ACT_MAX, I.ACT_MAX)


def _conv2d_int64(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int) -> np.ndarray:
    n, cin, h, wd = x.shape
    cout, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, cout, h, wd), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    return out + b[None, :, None, None]


def _exponents(m: I.IntegerConv) -> np.ndarray:
    return np.round(-np.log2(m.inv_scale.numpy())).astype(np.int64)


@pytest.mark.parametrize(("channels", "kernel"), [(6, 3), (32, 3), (64, 3), (5, 1)])
def test_integer_conv_equals_a_numpy_int64_reference(channels: int, kernel: int) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(channels, 5, kernel, padding=kernel // 2)
    m = I.IntegerConv(conv)
    assert m.unit_stride == (kernel == 1 or channels >= 32)  # both kernels: ATen's conv and one product per tap
    x = torch.randint(-I.ONE * 40, I.ONE * 40, (2, channels, 7, 9)).double()
    w, b = m.weight.numpy().astype(np.int64), m.bias.numpy().astype(np.int64)
    assert np.array_equal(w, np.round(conv.weight.detach().double().numpy() * 2.0 ** _exponents(m)[:, None, None, None]))
    ref = _round_shift(_conv2d_int64(x.numpy().astype(np.int64), w, b, kernel // 2), _exponents(m))
    assert np.array_equal(m(x).numpy().astype(np.int64), ref)
    # and the result is the float conv's to within the weights' and activations' rounding
    assert torch.allclose(m(x) / I.ONE, conv(x.float() / I.ONE).double(), atol=2e-3)


def test_transposed_and_stereo_convs_are_close_to_float_and_identical_across_threads() -> None:
    torch.manual_seed(1)
    for conv, shape in ((nn.ConvTranspose3d(4, 3, (3, 5, 5), (1, 2, 2), (1, 2, 2), (0, 1, 1)), (1, 4, 2, 5, 6)),
                        (nn.Conv3d(4, 3, (3, 5, 5), (1, 2, 2), (1, 2, 2)), (1, 4, 2, 12, 10))):
        m = I.IntegerConv(conv)
        x = torch.randint(-I.ONE * 8, I.ONE * 8, shape).double()
        torch.set_num_threads(2)
        two = m(x)
        torch.set_num_threads(1)
        assert torch.equal(two, m(x))
        assert torch.allclose(m(x) / I.ONE, conv(x.float() / I.ONE).double(), atol=2e-3)


def test_a_3d_conv_by_kernel_taps_equals_the_dense_float64_conv() -> None:
    torch.manual_seed(2)
    m = I.IntegerConv(nn.Conv3d(64, 8, 3, padding=1))
    assert m.unit_stride
    x = torch.randint(-I.ACT_MAX, I.ACT_MAX, (1, 64, 2, 5, 7)).double()  # the full activation range
    with I.exact_kernels():
        dense = torch.nn.functional.conv3d(x, m.weight, m.bias, padding=1)
    assert torch.equal(m(x), m._requantise(dense))
    beyond = x * 4  # inputs beyond ACT_MAX are read clamped, whichever path reads them
    assert torch.equal(m(beyond), m(beyond.clamp(-I.ACT_MAX, I.ACT_MAX)))


@pytest.mark.parametrize("magnitude", [I.ONE * 40, I.ACT_MAX * 2])  # typical latents; beyond the clamp
def test_the_checkerboard_context_at_the_non_anchors_equals_the_dense_context(monkeypatch: pytest.MonkeyPatch, magnitude: int) -> None:
    torch.manual_seed(3)
    m = I.IntegerConv(nn.Conv3d(4, 6, (3, 5, 5), padding=(1, 2, 2)))
    anchors = anchor_mask(7, 9)
    y = torch.randint(-magnitude, magnitude, (2, 4, 7, 9)).double() * anchors  # decoded anchors, zeros elsewhere
    dense = to_views(m(from_views(y)))
    monkeypatch.setattr(I, "PATCH_POSITIONS", 5)  # several blocks of positions
    assert torch.equal(I.checkerboard_context(m, y, ~anchors), dense[..., ~anchors])


def _interp(table: np.ndarray, u: np.ndarray) -> np.ndarray:
    i, f = u >> 4, u & 15
    return table[i] + (((table[np.minimum(i + 1, len(table) - 1)] - table[i]) * f + 8) >> 4)


def test_integer_attention_equals_a_numpy_int64_reference() -> None:
    torch.manual_seed(2)
    att = EfficientAttention(16, heads=2)
    m = I.IntegerEfficientAttention(att)
    q, k, v = (torch.randint(-I.ONE * 3, I.ONE * 3, (2, 16, 5, 7)).double() for _ in range(3))
    exp_table = I.lookup_tables()["exp"].numpy()

    def conv1x1(layer: I.IntegerConv, x: torch.Tensor) -> np.ndarray:
        w = layer.weight.numpy().astype(np.int64)[:, :, 0, 0]
        acc = np.einsum("nchw,oc->nohw", x.numpy().astype(np.int64), w) + layer.bias.numpy().astype(np.int64)[None, :, None, None]
        return _round_shift(acc, _exponents(layer))

    def weights(x: np.ndarray, axis: int, frac: int) -> np.ndarray:
        d = x.max(axis=axis, keepdims=True) - x
        e = np.where(d >= I.EXP_RANGE * I.ONE, 0, _interp(exp_table, np.minimum(d, I.EXP_RANGE * I.ONE)))
        return (e + (1 << (I.EXP_FRAC - frac - 1))) >> (I.EXP_FRAC - frac) if frac < I.EXP_FRAC else e

    def rdiv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (2 * a + b) // (2 * b)

    b_, e_, n = 2, 8, 35
    qq, kk, vv = (conv1x1(layer, t).reshape(b_, 2, 4, n) for layer, t in ((m.conv_q, q), (m.conv_k, k), (m.conv_v, v)))
    ek = weights(kk, 3, I.positions_frac(n))
    context = rdiv(np.einsum("bhin,bhjn->bhij", ek, vv), ek.sum(axis=3)[..., None])
    eq = weights(qq, 2, I.EXP_FRAC)
    out = rdiv(np.einsum("bhij,bhin->bhjn", context, eq), eq.sum(axis=2, keepdims=True))
    ref = conv1x1(m.projection_o, torch.from_numpy(out.reshape(b_, e_, 5, 7)).double())
    assert np.array_equal(m(q, k, v).numpy().astype(np.int64), ref)
    assert torch.allclose(m(q, k, v) / I.ONE, att(q.float() / I.ONE, k.float() / I.ONE, v.float() / I.ONE).double(), atol=5e-3)


def test_the_dense_tables_give_the_interpolated_integers_at_every_input() -> None:
    """One gather per activation: the same integers as interpolating the 2^-8 tables (an int64
    reference), at every input the tables distinguish, beyond them and at the clamps."""
    tables = {name: t.numpy() for name, t in I.lookup_tables().items()}
    wide = np.arange(-20 * I.ONE, 20 * I.ONE + 1)
    far = np.concatenate([np.arange(-I.ACT_MAX - 3000, I.ACT_MAX + 3000, 4099), [-2**40, -I.ACT_MAX - 1, I.ACT_MAX + 1, 2**40]])
    x = np.concatenate([wide, far])
    xt = torch.from_numpy(x).double()
    g, t = 8 * I.ONE, 8 * I.ONE
    xc = np.clip(x, -I.ACT_MAX, I.ACT_MAX)
    gelu = np.where(xc >= g, xc, np.where(xc < -g, 0, _interp(tables["gelu"], np.clip(xc, -g, g - 1) + g)))
    assert I.gelu(xt).dtype == torch.float64 and np.array_equal(I.gelu(xt).numpy(), gelu)
    assert np.array_equal(I.half_tanh(xt).numpy(), _interp(tables["half_tanh"], np.clip(x, -t, t) + t))
    rows = torch.from_numpy(np.concatenate([wide, far[:-4]])[: 6 * 12000].reshape(6, -1)).double()
    for frac in range(1, I.EXP_FRAC + 1):
        for dim in (0, 1):
            d = (rows.amax(dim, keepdim=True) - rows).long().numpy()
            e = np.where(d >= I.EXP_RANGE * I.ONE, 0, _interp(tables["exp"], np.minimum(d, I.EXP_RANGE * I.ONE)))
            e = (e + (1 << (I.EXP_FRAC - frac - 1))) >> (I.EXP_FRAC - frac) if frac < I.EXP_FRAC else e
            got = I.exp_weights(rows, dim, frac)
            assert got.dtype == torch.int64 and np.array_equal(got.numpy(), e), (frac, dim)


def test_lookup_tables_are_the_functions_rounded() -> None:
    tables = I.lookup_tables()
    x = torch.arange(-8 * 256, 8 * 256 + 1, dtype=torch.float64) / 256
    assert torch.equal(tables["gelu"], torch.round(nn.functional.gelu(x) * I.ONE).long())
    assert torch.equal(tables["half_tanh"], torch.round(0.5 * torch.tanh(x) * I.ONE).long())
    e = torch.arange(0, 16 * 256 + 1, dtype=torch.float64) / 256
    assert torch.equal(tables["exp"], torch.round(torch.exp(-e) * 2**I.EXP_FRAC).long())
    u = torch.arange(-40000, 40000, 3, dtype=torch.float64)  # interpolated: within one unit
    assert (I.gelu(u) - nn.functional.gelu(u / I.ONE) * I.ONE).abs().max() <= 1
    assert (I.half_tanh(u) - 0.5 * torch.tanh(u / I.ONE) * I.ONE).abs().max() <= 1


@pytest.mark.parametrize("variant", ["bisic-fast", "bisic"])
def test_every_accumulator_of_the_shipped_weights_stays_exact(variant: str) -> None:
    exact = I.integer_entropy_model(load_stored(default_entry(variant)).model)
    bounds = I.accumulator_bounds(exact)
    assert len(bounds) > 100 and max(bounds.values()) < I.ACC_LIMIT <= 2**53


def test_release_checkpoints_get_the_exact_path_too() -> None:
    from stereocodec.weights import load_weights
    for name in ("official_bisic_fast_n48.pth.tar", "official_bisic_n48.pth.tar"):
        exact = I.integer_entropy_model(load_weights(need_shared("reference", name)).model)
        assert max(I.accumulator_bounds(exact).values()) < I.ACC_LIMIT


@pytest.mark.parametrize("side", [6325, 65535])
def test_positional_sums_stay_in_int64_for_the_largest_views(side: int) -> None:
    """A view of side x side pixels (65535: the most the header can declare) has (side / 16)^2
    latent positions; their exponential-weighted sums and twice them (round_div) fit int64, and
    each float64 block of them stays below 2^52."""
    n = math.ceil(side / 64) * 4 * math.ceil(side / 64) * 4
    frac = I.positions_frac(n)
    assert 2 * n * (1 << frac) * I.ACT_MAX + n * (1 << frac) < 2**63
    block = 1 << (I.BLOCK_BITS - 28 - (frac + 1))
    assert block * (1 << frac) * I.ACT_MAX < I.ACC_LIMIT
    if side <= 6325:  # up to 40 megapixels a view, the softmax keeps 14-15 bits
        assert frac >= 14


def _crop(path: Path, out: Path, box: tuple[int, int, int, int] | None) -> Path:
    img = Image.open(path).convert("RGB")
    (img.crop(box) if box else img).save(out)
    return out


def _decode_everywhere(tmp_path: Path, sbic: Path, environments) -> None:
    """Decode in this environment and in each other one; same symbols (the decode checks them) and pixels within tolerance."""
    run_cli("decode", sbic, "-o", tmp_path / "ref", check=True)
    ref = [np.asarray(Image.open(tmp_path / f"ref_{s}.png")).astype(int) for s in ("left", "right")]
    for i, env in enumerate(environments):
        proc = run_cli("decode", sbic, "-o", tmp_path / f"env{i}", env=env)
        assert proc.returncode == 0, f"{env}: {proc.stderr.strip()}"
        for side, r in zip(("left", "right"), ref):
            got = np.asarray(Image.open(tmp_path / f"env{i}_{side}.png")).astype(int)
            assert np.abs(got - r).max() <= PIXEL_TOLERANCE, env


@pytest.mark.parametrize("variant", ["bisic-fast", "bisic"])
def test_a_file_decodes_in_every_environment(tmp_path: Path, variant: str) -> None:
    left = _crop(EXAMPLES / "left.png", tmp_path / "l.png", (64, 64, 320, 256))
    right = _crop(EXAMPLES / "right.png", tmp_path / "r.png", (64, 64, 320, 256))
    sbic = tmp_path / "pair.sbic"
    run_cli("encode", left, right, "-o", sbic, "--variant", variant, "-q", "5", env={"OMP_NUM_THREADS": "2"}, check=True)
    assert Container.from_bytes(sbic.read_bytes()).version == 3
    _decode_everywhere(tmp_path, sbic, ENVIRONMENTS)


@pytest.mark.parametrize(("variant", "environments"), [("bisic-fast", ENVIRONMENTS), ("bisic", ENVIRONMENTS[:1] + ENVIRONMENTS[3:4])])
def test_a_full_size_shared_pair_decodes_in_other_environments(tmp_path: Path, variant: str, environments) -> None:
    pair = need_shared("data", "stereo", "foundation")
    sbic = tmp_path / "pair.sbic"
    run_cli("encode", pair / "left.png", pair / "right.png", "-o", sbic, "--variant", variant, "-q", "0",
            env={"OMP_NUM_THREADS": "2"}, check=True)
    _decode_everywhere(tmp_path, sbic, environments)


def test_an_intact_legacy_file_that_this_machine_cannot_reproduce_says_so(tmp_path: Path) -> None:
    """A v3 payload relabelled as v1 (CRCs recomputed) cannot be decoded by the float model at any
    thread count: the message says the file is intact and legacy, not "corrupted"."""
    left = _crop(EXAMPLES / "left.png", tmp_path / "l.png", (0, 0, 64, 64))
    right = _crop(EXAMPLES / "right.png", tmp_path / "r.png", (0, 0, 64, 64))
    sbic = tmp_path / "pair.sbic"
    run_cli("encode", left, right, "-o", sbic, "-q", "5", check=True)
    legacy = replace(Container.from_bytes(sbic.read_bytes()), entropy_path="float")
    (tmp_path / "legacy.sbic").write_bytes(legacy.to_bytes())
    proc = run_cli("decode", tmp_path / "legacy.sbic", "-o", tmp_path / "out")
    assert proc.returncode == 1
    message = proc.stderr.strip()
    assert "\n" not in message and "intact" in message and "format v1" in message and "corrupted" not in message
    assert not list(tmp_path.glob("out_*"))

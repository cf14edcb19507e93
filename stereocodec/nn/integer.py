"""The exact entropy path: the entropy model in integer arithmetic, the same integers on every machine.

A range decoder needs the encoder's model parameters bit for bit. Float32 results change in
their last bits with the thread count, the SIMD kernels, the BLAS or oneDNN build and the
device, and a mean or scale that moves across a rounding point desynchronises the decoder.
So everything the decoder computes between the coded symbols and the coder's inputs (the
hyper-decoders, the channel context and its stereo attention, the spatial contexts, the
entropy-parameter networks and the latent residual prediction) runs here on integers:

- Every activation is an integer count of 2^-FRAC (FRAC = 12), clamped to |a| <= ACT_MAX
  (2^28 - 1, that is |value| < 65536) wherever a layer reads it.
- A layer's float weights become, per output channel c, integers w_c * 2^e_c (round half to
  even) and a bias b_c * 2^(FRAC + e_c); e_c is the largest exponent <= E_MAX for which the
  channel's L1 norm times 2^e_c is at most 2^W_BITS and every partial sum of the layer stays
  below ACC_LIMIT = 2^52 (checked per channel: sum |w_int| * ACT_MAX + |b_int|). The L1 norm
  is `math.fsum` (exactly rounded), so the rule gives the same integers everywhere.
- The integers are carried in float64 tensors: products and sums of integers below 2^53 are
  exact whatever the summation order, so ordinary float64 conv and matmul kernels (any thread
  count, SIMD width, BLAS, CPU or GPU) return the same integers. cuDNN is switched off around
  them (it may pick FFT or Winograd algorithms, which are not sums of products). Stride-1 convs
  run as one BLAS product per kernel tap (`IntegerConv._taps_product`), and BiSIC-Fast's twin
  evaluates its per-position networks only where the coder reads them (`ExactBiSICFast`): the
  same integers as the dense convs, with less work.
  Requantisation, x * 2^-e_c rounded half up, is exact in float64 too.
- GELU, LeakyReLU(0.01), 0.5 tanh and the exponentials of the attention's softmaxes are
  integer operations: lookup tables every 2^-8 with linear interpolation in int64, tables built
  once by `decimal` arithmetic (exactly specified, so the same on every platform), and
  LeakyReLU's slope as 10486 / 2^20. A softmax's normalisation is an exact int64 division.
  The interpolation is evaluated once at every integer input (`dense_tables`), so applying a
  nonlinearity is one gather.

The bounds that keep every accumulator exact are in `accumulator_bounds`, which the tests check
for every shipped weights file and for the largest view the container can declare.
"""

from __future__ import annotations

import copy
import itertools
import math
from decimal import Context, Decimal, ROUND_HALF_EVEN, localcontext
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from .layers import EfficientAttention, HalfTanh, MaskedConv3d, ResidualBlock
from .models import BiSICBase, BiSICFast, anchor_mask

FRAC = 12  # fractional bits of every activation
ONE = 1 << FRAC
ACT_MAX = (1 << 28) - 1  # |activation| in units of 2^-FRAC
ACC_LIMIT = 1 << 52  # every partial sum of a float64 kernel stays below this
W_BITS = 23  # a channel's weights sum (in absolute value) to at most 2^W_BITS
E_MAX = 40  # largest weight exponent (channels with tiny weights)
LUT_SHIFT = 4  # tables hold one entry every 2^(LUT_SHIFT - FRAC) = 1/256
EXP_FRAC = 15  # fractional bits of a softmax's exponentials
LEAKY_NUM, LEAKY_SHIFT = 10486, 20  # LeakyReLU slope 0.01 as 10486 / 2^20 (0.0100002)
SOFTMAX_TOTAL = 60  # bits an exponential-weighted sum over positions may use in int64
BLOCK_BITS = 52  # bits a float64 block of such a sum may use
_DECIMAL = Context(prec=50)
_PI = Decimal("3.14159265358979323846264338327950288419716939937510")

# The modules of a BiSIC network that are not on the entropy path (the image transforms and
# the hyper-encoder, which only the encoder runs); they stay float and are not copied here.
TRANSFORMS = (
    "Conv3DEncoder_A", "En_Transfer_A", "Conv3DEncoder_B", "En_Transfer_B",
    "De_Transfer_A", "Conv3DDecoder_A", "De_Transfer_B", "Conv3DDecoder_B",
)


# --- lookup tables, built with exactly specified decimal arithmetic -------------------------
GELU_RANGE = 8  # GELU(x) is x above it and 0 below minus it, to within 2^-FRAC
TANH_RANGE = 8  # 0.5 tanh(x) is +-0.5 beyond it, to within 2^-FRAC
EXP_RANGE = 16  # exp(-x) * 2^EXP_FRAC rounds to 0 beyond it
_STEPS = 1 << (FRAC - LUT_SHIFT)  # table entries per unit


def _powers(base: Decimal, count: int) -> list[Decimal]:
    """base^0 .. base^(count-1) by repeated multiplication (no transcendental call per entry)."""
    out = [Decimal(1)]
    for _ in range(count - 1):
        out.append(out[-1] * base)
    return out


def _normal_cdf(count: int) -> list[Decimal]:
    """Phi(x_i) at x_i = i / 256, i < count: Taylor steps of 1/256 from Phi(0) = 1/2.

    Phi^(k)(x) = (-1)^(k-1) He_(k-1)(x) phi(x) (He: probabilists' Hermite polynomials), so each
    step needs only phi(x_i), itself phi(x_(i-1)) exp(-(2i-1) h^2 / 2) as products of one constant.
    """
    h = Decimal(1) / _STEPS
    q = (-(h * h) / 2).exp()
    phi, ratio = [1 / (2 * _PI).sqrt()], q
    for _ in range(count - 1):
        phi.append(phi[-1] * ratio)
        ratio *= q * q
    cdf = [Decimal("0.5")]
    for i in range(count - 1):
        x = h * i
        he_prev, he, term, total = Decimal(0), Decimal(1), Decimal(1), Decimal(0)
        for k in range(1, 20):  # (h x)^k / k! < 1e-40 well before k = 20 for x <= 8
            term = term * h / k
            total += (term if k % 2 else -term) * he
            he_prev, he = he, x * he - (k - 1) * he_prev if k > 1 else x
        cdf.append(cdf[-1] + phi[i] * total)
    return cdf


def _to_int(values: list[Decimal], frac: int) -> torch.Tensor:
    return torch.tensor([int((v * (1 << frac)).to_integral_value(ROUND_HALF_EVEN)) for v in values], dtype=torch.int64)


@cache
def lookup_tables() -> dict[str, torch.Tensor]:
    """The tables of the nonlinearities (CPU, int64) at x = i / 256; the same integers on every machine.

    gelu on [-8, 8], half_tanh (0.5 tanh) on [-8, 8] in units of 2^-FRAC; exp(-x) on [0, 16] in
    units of 2^-EXP_FRAC. 50-digit decimal arithmetic, rounded half to even once at the end.
    """
    n = _STEPS
    with localcontext(_DECIMAL):
        xs = [Decimal(i) / n for i in range(GELU_RANGE * n + 1)]
        cdf = _normal_cdf(GELU_RANGE * n + 1)
        gelu_pos = [x * p for x, p in zip(xs, cdf)]
        gelu_all = [g - x for g, x in zip(gelu_pos[:0:-1], xs[:0:-1])] + gelu_pos  # GELU(-x) = GELU(x) - x
        e2x = _powers((Decimal(2) / n).exp(), TANH_RANGE * n + 1)
        tanh_pos = [Decimal("0.5") - 1 / (e + 1) for e in e2x]
        tanh_all = [-t for t in tanh_pos[:0:-1]] + tanh_pos
        exp_neg = _powers((Decimal(-1) / n).exp(), EXP_RANGE * n + 1)
        return {"gelu": _to_int(gelu_all, FRAC), "half_tanh": _to_int(tanh_all, FRAC), "exp": _to_int(exp_neg, EXP_FRAC)}


def _interpolate(table: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """table at u / 2^LUT_SHIFT (u >= 0, int64, inside the table), interpolated linearly, rounded half up."""
    i = u >> LUT_SHIFT
    f = u & ((1 << LUT_SHIFT) - 1)
    a = table.take(i)  # flat gathers: much cheaper than advanced indexing
    b = table.take((i + 1).clamp_(max=len(table) - 1))
    return a + (((b - a) * f + (1 << (LUT_SHIFT - 1))) >> LUT_SHIFT)


@cache
def dense_tables() -> dict[str, torch.Tensor]:
    """`lookup_tables` interpolated at every integer input (CPU): a nonlinearity is one gather.

    Built by `_interpolate` itself, so they hold exactly its integers; one gather per activation
    instead of two and ten elementwise passes. gelu (float64): index x + 8 * ONE + 1 for x in
    [-8 * ONE - 1, 8 * ONE - 1], whose first entry (0) stands for every x below -8. half_tanh
    (float64): index x + 8 * ONE for x in [-8 * ONE, 8 * ONE]. exp (int64): index d in
    [0, 16 * ONE], whose last entry (0) stands for every d from 16 on.
    """
    tables, zero = lookup_tables(), torch.zeros(1, dtype=torch.int64)
    return {
        "gelu": torch.cat([zero, _interpolate(tables["gelu"], torch.arange(2 * GELU_RANGE * ONE))]).double(),
        "half_tanh": _interpolate(tables["half_tanh"], torch.arange(2 * TANH_RANGE * ONE + 1)).double(),
        "exp": torch.cat([_interpolate(tables["exp"], torch.arange(EXP_RANGE * ONE)), zero]),
    }


@cache
def _exp_table(frac: int) -> torch.Tensor:
    """The dense exp table in units of 2^-frac, rounded half up (frac <= EXP_FRAC)."""
    e = dense_tables()["exp"]
    return e if frac == EXP_FRAC else (e + (1 << (EXP_FRAC - frac - 1))) >> (EXP_FRAC - frac)


def _gather(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for an integer-valued float64 index inside the table (int32 indices: half the traffic of int64)."""
    return table.to(index.device).index_select(0, index.to(torch.int32).flatten()).view(index.shape)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU of Q.12 integers (float64 in, float64 out): x itself from 8 on, clamped to ACT_MAX."""
    lim = GELU_RANGE * ONE
    inside = _gather(dense_tables()["gelu"], x.clamp(-lim - 1, lim - 1).add_(lim + 1))
    return torch.where(x >= lim, x, inside).clamp_(max=ACT_MAX)


def half_tanh(x: torch.Tensor) -> torch.Tensor:
    """0.5 tanh of Q.12 integers."""
    lim = TANH_RANGE * ONE
    return _gather(dense_tables()["half_tanh"], x.clamp(-lim, lim).add_(lim))


def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    """LeakyReLU(0.01) of Q.12 integers: the negative side times 10486 / 2^20, rounded half up."""
    x = x.clamp(-ACT_MAX, ACT_MAX)
    return torch.where(x >= 0, x, torch.floor((x * LEAKY_NUM + (1 << (LEAKY_SHIFT - 1))) * 2.0**-LEAKY_SHIFT))


def exp_weights(x: torch.Tensor, dim: int, frac: int = EXP_FRAC) -> torch.Tensor:
    """exp(x - max x) along `dim` in units of 2^-frac (int64): a softmax's numerators."""
    d = (x.amax(dim, keepdim=True) - x).clamp_(max=EXP_RANGE * ONE)
    return _gather(_exp_table(frac), d)


def round_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b rounded half up, exactly, for int64 a and positive int64 b."""
    return torch.div(2 * a + b, 2 * b, rounding_mode="floor")


def positions_frac(n: int) -> int:
    """Fractional bits of the positional softmax over n positions, so its weighted sums fit int64.

    sum_n e_n * v_n <= n * 2^frac * ACT_MAX must stay below 2^SOFTMAX_TOTAL (and twice it, in
    `round_div`, below 2^63): 15 bits up to 2^17 positions (33.5 megapixels a view), fewer beyond.
    """
    return max(1, min(EXP_FRAC, SOFTMAX_TOTAL - 28 - max(1, (n - 1).bit_length())))


def within_range(x: torch.Tensor) -> torch.Tensor:
    """x clamped to |x| <= ACT_MAX: x itself when it already is (one read, where a clamp writes a copy)."""
    lo, hi = torch.aminmax(x)
    return x if bool(lo >= -ACT_MAX) and bool(hi <= ACT_MAX) else x.clamp(-ACT_MAX, ACT_MAX)


def exact_kernels():
    """Switch off the kernels whose float64 results are not plain sums of products (cuDNN's)."""
    return torch.backends.cudnn.flags(enabled=False)


# --- layers -------------------------------------------------------------------------------
def _exponents(weight: torch.Tensor, bias: torch.Tensor, out_dim: int) -> torch.Tensor:
    """Per output channel, the largest e <= E_MAX with sum |round(w 2^e)| <= 2^W_BITS and
    sum |round(w 2^e)| * ACT_MAX + |round(b 2^(FRAC + e))| < ACC_LIMIT.

    Both sums are of integers, exact in int64, so the rule gives the same e everywhere; the
    search starts from the float L1 norm's estimate, which only decides where to look.
    """
    w = weight.transpose(0, out_dim).reshape(weight.shape[out_dim], -1)
    norm = w.abs().sum(dim=1)
    start = torch.where(norm > 0, torch.floor(W_BITS - torch.log2(norm)), torch.full_like(norm, E_MAX))

    def fits(e: torch.Tensor) -> torch.Tensor:
        l1 = torch.round(w * torch.exp2(e)[:, None]).abs().sum(dim=1)  # exact: integers below 2^53
        b = torch.round(bias * torch.exp2(e + FRAC)).abs()
        return (l1 <= 2**W_BITS) & (l1 * ACT_MAX + b < ACC_LIMIT) & (e <= E_MAX)

    e = start.clamp(max=E_MAX)
    while not bool(fits(e).all()):
        e = torch.where(fits(e), e, e - 1)
    while True:
        up = fits(e + 1)
        if not bool(up.any()):
            return e
        e = torch.where(up, e + 1, e)


class IntegerConv(nn.Module):
    """A Conv2d, Conv3d (masked or not) or ConvTranspose3d on Q.12 integers, per-channel power-of-two weights."""

    def __init__(self, conv: nn.Conv2d | nn.Conv3d | nn.ConvTranspose3d) -> None:
        super().__init__()
        weight = conv.weight.detach().to("cpu", torch.float64)
        if isinstance(conv, MaskedConv3d):
            weight = weight * conv.mask.detach().to("cpu", torch.float64)
        self.transposed = isinstance(conv, nn.ConvTranspose3d)
        out_dim = 1 if self.transposed else 0
        bias = conv.bias.detach().to("cpu", torch.float64) if conv.bias is not None else torch.zeros(weight.shape[out_dim], dtype=torch.float64)
        e = _exponents(weight, bias, out_dim)
        view = [1] * weight.dim()
        view[out_dim] = -1
        self.register_buffer("weight", torch.round(weight * torch.exp2(e).reshape(view)))
        self.register_buffer("bias", torch.round(bias * torch.exp2(e + FRAC)))
        self.register_buffer("inv_scale", torch.exp2(-e))
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.dims = weight.dim() - 2
        self.options = dict(stride=conv.stride, padding=conv.padding)
        # a stride-1 conv runs as one matrix product per kernel tap (`_taps_product`): (taps, out, in),
        # when each product is deep enough for BLAS (1x1, or 32 input channels and more: below, ATen's im2col conv is as fast)
        taps = math.prod(weight.shape[2:])
        self.unit_stride = not self.transposed and all(s == 1 for s in conv.stride) and (taps == 1 or conv.in_channels >= 32)
        if self.unit_stride:
            self.register_buffer("tap_weights", self.weight.flatten(2).permute(2, 0, 1).contiguous())
        if self.transposed:
            self.options["output_padding"] = conv.output_padding
        self.to(conv.weight.device)

    def _requantise(self, acc: torch.Tensor) -> torch.Tensor:
        """acc * 2^-e_c rounded half up (exact in float64), channels on dim 1; in place on a fresh accumulator."""
        shape = [1] * acc.dim()
        shape[1] = -1
        return acc.mul_(self.inv_scale.reshape(shape)).add_(0.5).floor_().clamp_(-ACT_MAX, ACT_MAX)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = within_range(x)
        if self.unit_stride:
            return self._requantise(self._taps_product(x))
        fn = {(2, False): F.conv2d, (3, False): F.conv3d, (3, True): F.conv_transpose3d}[(self.dims, self.transposed)]
        with exact_kernels():
            acc = fn(x, self.weight, self.bias, **self.options)
        return self._requantise(acc)

    def _taps_product(self, x: torch.Tensor) -> torch.Tensor:
        """The stride-1 conv's accumulator as a sum of one matrix product per kernel tap.

        On the zero-padded input flattened row-major, the input of tap t at output position p is
        at p + offset_t, so each tap reads one contiguous window of the flat input: BLAS reads it
        in place, with no im2col copy (ATen's float64 convs make one). The output is computed on
        the padded grid's row pitch and cropped; one extra padded row keeps every window in range.
        Each partial sum is an exact integer, so the order of the sums does not matter.
        """
        kernel, padding = self.weight.shape[2:], self.options["padding"]
        taps = self.tap_weights.shape[0]
        pads = [q for p in reversed(padding) for q in (p, p)]
        if taps > 1:
            pads[-1] += 1
        flat = (F.pad(x, pads) if any(pads) else x).flatten(2)
        padded = [n + 2 * p for n, p in zip(x.shape[2:], padding)]
        out = [n - k + 1 for n, k in zip(padded, kernel)]
        pitch = [math.prod(padded[d + 1:]) for d in range(len(padded))]
        length = out[0] * pitch[0]
        b = x.shape[0]
        acc = self.bias[None, :, None].expand(b, self.out_channels, length).contiguous()
        with exact_kernels():
            for t, corner in enumerate(itertools.product(*(range(k) for k in kernel))):
                offset = sum(c * q for c, q in zip(corner, pitch))
                acc.baddbmm_(self.tap_weights[t].expand(b, -1, -1), flat[:, :, offset:offset + length])
        acc = acc.unflatten(2, [out[0], *padded[1:]])
        return acc[(..., *(slice(0, n) for n in out[1:]))]

    def forward_patches(self, patches: torch.Tensor, taps: torch.Tensor | None = None) -> torch.Tensor:
        """The conv at single positions: patches (P, in * taps) -> (P, out), as `MaskedConv3d.forward_patches`.

        `taps` (indices into the flattened kernel) restricts the kernel to the taps the patches hold.
        """
        w = self.weight.reshape(self.out_channels, self.in_channels, -1)
        w = (w if taps is None else w[:, :, taps]).reshape(self.out_channels, -1)
        return self.patch_product(within_range(patches), w)

    def patch_product(self, patches: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Requantised bias + patches @ w.T, for patches already within ACT_MAX and w some of `weight`'s entries (out, features)."""
        with exact_kernels():
            acc = torch.addmm(self.bias, patches, w.T)
        return self._requantise(acc)


class IntegerGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gelu(x)


class IntegerLeakyReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return leaky_relu(x)


class IntegerHalfTanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return half_tanh(x)


class IntegerResidualBlock(nn.Module):
    """`layers.ResidualBlock` on integers."""

    def __init__(self, block: ResidualBlock) -> None:
        super().__init__()
        self.conv1, self.conv2 = IntegerConv(block.conv1), IntegerConv(block.conv2)
        self.skip = IntegerConv(block.skip) if block.skip is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = leaky_relu(self.conv2(leaky_relu(self.conv1(x))))
        return out + (self.skip(x) if self.skip is not None else x)


class IntegerEfficientAttention(nn.Module):
    """`layers.EfficientAttention` on integers: the softmax over positions is applied after the sum.

    context = sum_n e_n v_n / sum_n e_n (one exact division per entry instead of one per
    position), with the positional sums taken in float64 blocks of exact partial sums and
    added in int64.
    """

    def __init__(self, attention: EfficientAttention) -> None:
        super().__init__()
        self.heads = attention.heads
        self.conv_q, self.conv_k, self.conv_v = (IntegerConv(c) for c in (attention.conv_q, attention.conv_k, attention.conv_v))
        self.projection_o = IntegerConv(attention.projection_o)

    def forward(self, q_in: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor) -> torch.Tensor:
        b, _, h, w = q_in.shape
        e, n = self.conv_q.out_channels, h * w
        d = e // self.heads
        q = self.conv_q(q_in).reshape(b, self.heads, d, n)
        k = self.conv_k(k_in).reshape(b, self.heads, d, n)
        v = self.conv_v(v_in).reshape(b, self.heads, d, n)
        frac = positions_frac(n)
        ek = exp_weights(k, dim=3, frac=frac)
        context = round_div(positional_sums(ek, v, frac), ek.sum(dim=3)[..., None])  # (b, heads, d, d), Q.12
        eq = exp_weights(q, dim=2)
        with exact_kernels():
            num = context.transpose(2, 3).to(torch.float64) @ eq.to(torch.float64)  # (b, heads, d, n)
        out = round_div(num.to(torch.int64), eq.sum(dim=2, keepdim=True))
        return self.projection_o(out.to(torch.float64).reshape(b, e, h, w))


def positional_sums(ek: torch.Tensor, v: torch.Tensor, frac: int) -> torch.Tensor:
    """sum_n ek[..., i, n] * v[..., j, n] exactly (int64), for ek <= 2^frac (int64) and Q.12 v (float64)."""
    n = ek.shape[-1]
    block = 1 << (BLOCK_BITS - 28 - (frac + 1))
    pad = (-n) % block
    a = F.pad(ek.to(torch.float64), (0, pad)).unflatten(-1, (-1, block)).transpose(-3, -2)  # (..., nb, d, block)
    c = F.pad(v, (0, pad)).unflatten(-1, (-1, block)).transpose(-3, -2)
    with exact_kernels():
        partial = a @ c.transpose(-1, -2)  # (..., nb, d, d): each below 2^BLOCK_BITS
    return partial.to(torch.int64).sum(dim=-3)


PATCH_POSITIONS = 8192  # positions per gathered block of patches (a few tens of MB)


def checkerboard_context(conv: IntegerConv, y_anchors: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """BiSIC-Fast's 3-D context conv at the non-anchors `rest` only: (2, out, P) from (2, c, h, w).

    The release zeroes every non-anchor before the conv, so only the kernel taps that land on
    anchors (those of `anchor_mask(5, 5)` around a non-anchor centre, 12 of 25 per view) see
    anything: the sums over them are the dense conv's integers at about a quarter of its work.
    """
    (views, c, h, w), (kd, kh, kw) = y_anchors.shape, conv.weight.shape[2:]
    if (views, kd, kh, kw) != (2, 3, 5, 5) or conv.options["padding"] != (1, 2, 2):
        raise ValueError(f"not a checkerboard context conv: kernel {(kd, kh, kw)} over {views} views")
    dev = y_anchors.device
    plane = anchor_mask(kh, kw, device=dev).flatten().nonzero()[:, 0]
    taps = (torch.arange(kd, device=dev)[:, None] * kh * kw + plane).flatten()
    # channels last, so that one row gather gives each position's patch as one contiguous row:
    # features in (depth, tap, channel) order, the weights' columns permuted to match
    depth, rows_, cols_ = views + 2, h + 4, w + 4  # depth: zero, left, right, zero
    ypad = y_anchors.new_zeros(depth, rows_, cols_, c)
    ypad[1:views + 1, 2:h + 2, 2:w + 2] = y_anchors.permute(0, 2, 3, 1).clamp(-ACT_MAX, ACT_MAX)
    ypad = ypad.reshape(-1, c)
    tap_offsets = (torch.arange(kd, device=dev)[:, None] * rows_ + plane // kw) * cols_ + plane % kw  # (kd, 12)
    view_offsets = torch.arange(views, device=dev) * rows_ * cols_
    weights = conv.weight.reshape(conv.out_channels, c, -1)[:, :, taps].transpose(1, 2).reshape(conv.out_channels, -1)
    rows, cols = rest.nonzero(as_tuple=True)
    blocks = []
    for start in range(0, len(rows), PATCH_POSITIONS):
        corner = rows[start:start + PATCH_POSITIONS] * cols_ + cols[start:start + PATCH_POSITIONS]  # of the 5x5 window, padded
        index = view_offsets[:, None, None] + corner[None, :, None] + tap_offsets.flatten()  # (views, P, kd * 12)
        patches = ypad.index_select(0, index.flatten()).reshape(views * len(corner), -1)
        blocks.append(conv.patch_product(patches, weights).reshape(views, len(corner), -1))
    return torch.cat(blocks, dim=1).transpose(1, 2)


class ExactBiSICFast(BiSICFast):
    """BiSIC-Fast's exact twin: its per-position networks run only where the coder reads them.

    Exact integers do not depend on which other positions are computed alongside, so the
    anchors' parameters come from the anchors alone and the non-anchors' from the non-anchors
    alone (half the entropy-parameter work), and their context from `checkerboard_context`.
    """

    def anchor_params_at(self, k: int, anchors: torch.Tensor, hm: torch.Tensor, hs: torch.Tensor,
                         ch: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        at = _at(anchors)
        mu, s = self.anchor_params(k, at(hm), at(hs), at(ch))
        return mu[..., 0], s[..., 0]

    def nonanchor_params_at(self, k: int, rest: torch.Tensor, hm: torch.Tensor, hs: torch.Tensor, y_anchors: torch.Tensor,
                            ch: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        at = _at(rest)
        ctx = checkerboard_context(self.context_prediction_CKBD_list[k], y_anchors, rest)
        mu, s = self.nonanchor_params(k, at(hm), at(hs), ctx[..., None], at(ch))
        return mu[..., 0], s[..., 0]


def _at(positions: torch.Tensor):
    """(2, C, h, w) -> (2, C, P, 1) at the positions (bool (h, w)): a per-position network's input there."""
    flat = positions.flatten().nonzero()[:, 0]
    return lambda t: None if t is None else t.flatten(2).index_select(2, flat)[..., None]


_EXACT_TWINS = {BiSICFast: ExactBiSICFast}

_LEAVES = {
    nn.Conv2d: IntegerConv, nn.Conv3d: IntegerConv, nn.ConvTranspose3d: IntegerConv, MaskedConv3d: IntegerConv,
    nn.GELU: lambda m: IntegerGELU(), nn.LeakyReLU: lambda m: IntegerLeakyReLU(), HalfTanh: lambda m: IntegerHalfTanh(),
    ResidualBlock: IntegerResidualBlock, EfficientAttention: IntegerEfficientAttention,
}


def _integerise(module: nn.Module) -> None:
    """Replace, in place, every leaf module below `module` by its integer counterpart."""
    for name, child in module.named_children():
        make = _LEAVES.get(type(child))
        if make is not None:
            if isinstance(child, nn.LeakyReLU) and child.negative_slope != 0.01:
                raise ValueError(f"no integer LeakyReLU with slope {child.negative_slope}")
            if isinstance(child, nn.GELU) and child.approximate != "none":
                raise ValueError("no integer GELU for the tanh approximation")
            setattr(module, name, make(child))
        else:
            _integerise(child)


@torch.no_grad()
def integer_entropy_model(model: BiSICBase) -> BiSICBase:
    """A copy of `model` whose entropy path runs on Q.12 integers (see this module's docstring).

    The copy keeps the release's module names and per-slice wiring (`hyperprior.decode`,
    `channel_context`, `slice_params`, `lrp`, ...), so the coding orders drive it exactly as they
    drive the float network; its image transforms and hyper-encoder are dropped.
    """
    keep = {name: getattr(model, name) for name in TRANSFORMS}
    encoder = model.hyperprior.hyper_encoder
    try:
        for name in TRANSFORMS:
            setattr(model, name, None)
        model.hyperprior.hyper_encoder = None
        exact = copy.deepcopy(model)
    finally:
        for name, module in keep.items():
            setattr(model, name, module)
        model.hyperprior.hyper_encoder = encoder
    exact.gaussian_conditional = None
    exact.__class__ = _EXACT_TWINS.get(type(model), type(model))
    _integerise(exact)
    return exact.eval()


def integer_medians(model: BiSICBase) -> torch.Tensor:
    """The hyper-latents' medians in Q.12 (float64 integers): z_hat = symbol * ONE + median."""
    return torch.round(model.hyperprior.entropy_bottleneck.medians().detach().double() * ONE)


def accumulator_bounds(model: BiSICBase) -> dict[str, float]:
    """For every integer conv of an integer model: the largest partial sum any input can give.

    max over channels of sum |w_int| * ACT_MAX + |b_int|; each must be below ACC_LIMIT.
    """
    bounds = {}
    for name, m in model.named_modules():
        if isinstance(m, IntegerConv):
            out_dim = 1 if m.transposed else 0
            w = m.weight.abs().transpose(0, out_dim).reshape(m.weight.shape[out_dim], -1).sum(dim=1)
            bounds[name] = float((w * ACT_MAX + m.bias.abs()).max())
    return bounds

"""Real coding of the latents: the same traversal drives the encoder and the decoder.

Each piece walks its symbols in a fixed order and asks an `io` object for the decodable
values: the encoder's io codes round(y - mu) and returns it plus mu, the decoder's io
decodes the symbols and returns the same values. Sharing one walk for both directions is
what guarantees that contexts on both sides read identical numbers.

Composition (as in CompressAI's latent codecs): the hyperprior codes z with the factorized
prior; then for each channel slice, a spatial order codes y: `raster_wavefront` for BiSIC
(masked 5x5 context; all positions with equal 3*row + col are independent, so both views
and a whole anti-diagonal are coded per step) and `checkerboard` for BiSIC-Fast (anchors,
then non-anchors conditioned on them). What an order may ask of a network is named in
`contract`; the codec checks it when it is built.

Two arithmetics drive the same walks (`numerics`): the float network (formats v1 and v2) and
the exact entropy path (`nn.integer`, format v3), whose means, scales and decoded values are
integers that every machine computes alike. The image transforms stay float in both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..nn.integer import integer_entropy_model
from ..nn.models import BiSICBase, anchor_mask, from_views, to_views
from .contract import CheckerboardNetwork, SliceNetwork, WavefrontNetwork
from .numerics import FIXED_POINT, FLOAT, FixedPointArithmetic, FloatArithmetic
from .range_coding import CodingError, SymbolDecoder, SymbolEncoder, categorical_tables


class SymbolIO(Protocol):
    """One direction of coding. Given the target (encoder) or None (decoder), return the decodable values."""

    def gaussian(self, target: torch.Tensor | None, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor: ...

    def categorical(self, target: torch.Tensor | None, rows: np.ndarray, *tables: np.ndarray) -> torch.Tensor: ...


Arithmetic = FloatArithmetic | FixedPointArithmetic


class EncodeIO:
    def __init__(self, coder: SymbolEncoder, numerics: Arithmetic) -> None:
        self.coder = coder
        self.numerics = numerics

    def gaussian(self, target: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        symbols = self.numerics.symbols(target, means)
        self.coder.gaussian(symbols.cpu().numpy().astype(np.int64), self.numerics.indices(scales))
        return self.numerics.values(symbols, means)

    def categorical(self, target: torch.Tensor, rows: np.ndarray, *tables: np.ndarray) -> torch.Tensor:
        symbols = target.cpu().numpy().astype(np.int64)
        self.coder.categorical(symbols, rows, *tables)
        return target


class DecodeIO:
    def __init__(self, coder: SymbolDecoder, numerics: Arithmetic) -> None:
        self.coder = coder
        self.numerics = numerics

    def gaussian(self, target: None, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        symbols = self.coder.gaussian(self.numerics.indices(scales))
        return self.numerics.values(torch.from_numpy(symbols).to(means.dtype).to(means.device).reshape(means.shape), means)

    def categorical(self, target: None, rows: np.ndarray, *tables: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.coder.categorical(rows, *tables)).float()


def wavefront_positions(h: int, w: int, device: torch.device | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Steps of BiSIC's decoding order: all (row, col) with 3*row + col = t, rows ascending.

    The 5x5 "A" mask reads (r, c-1), (r, c-2) and rows r-1, r-2 at columns c-2..c+2, all of
    which have a smaller 3*row + col, so each step depends only on earlier steps.
    """
    for t in range(3 * (h - 1) + w):
        rows = torch.arange(max(0, -(-(t - w + 1) // 3)), min(h - 1, t // 3) + 1, device=device)
        yield rows, t - 3 * rows


def raster_wavefront(
    model: WavefrontNetwork, io: SymbolIO, k: int, y: torch.Tensor | None, hm: torch.Tensor, hs: torch.Tensor, ch: torch.Tensor | None
) -> torch.Tensor:
    """BiSIC's masked-context slice, coded one anti-diagonal (3*row + col = t) at a time.

    y, hm, hs, ch are per view (2, C, h, w); returns the decodable slice (2, c, h, w).
    The masked 3-D conv is evaluated only at the positions of the step, on 5x5 patches.
    """
    conv = model.context_prediction_list[k]
    c = conv.in_channels
    h, w = hm.shape[-2:]
    dev = hm.device
    ypad = torch.zeros(c, 4, h + 4, w + 4, device=dev, dtype=hm.dtype)  # depth 1 = left, 2 = right; zero borders
    out = torch.zeros(2, c, h, w, device=dev, dtype=hm.dtype)
    taps = torch.arange(5, device=dev)
    for rows, cols in wavefront_positions(h, w, dev):
        p = len(rows)
        patches = ypad[:, :, rows[:, None, None] + taps[None, :, None], cols[:, None, None] + taps[None, None, :]]
        ctx = torch.stack([
            conv.forward_patches(patches[:, v:v + 3].permute(2, 0, 1, 3, 4).reshape(p, -1)) for v in (0, 1)
        ])  # (2, P, 2c)
        at = lambda t4: t4[:, :, rows, cols].permute(0, 2, 1).reshape(2 * p, -1, 1, 1)  # noqa: E731
        means, scales = model.slice_params(
            k, at(hm), at(hs), ctx.reshape(2 * p, -1, 1, 1), None if ch is None else at(ch)
        )
        per_view = lambda t4: t4.reshape(2, p, c).permute(0, 2, 1)  # noqa: E731
        values = io.gaussian(None if y is None else y[:, :, rows, cols], per_view(means), per_view(scales))
        out[:, :, rows, cols] = values
        ypad[:, 1:3, rows + 2, cols + 2] = values.permute(1, 0, 2)
    return out


def checkerboard(
    model: CheckerboardNetwork, io: SymbolIO, k: int, y: torch.Tensor | None, hm: torch.Tensor, hs: torch.Tensor, ch: torch.Tensor | None
) -> torch.Tensor:
    """BiSIC-Fast's slice in two passes: anchors from hyperprior + channel context, then the rest."""
    anchors = anchor_mask(*hm.shape[-2:], device=hm.device)
    out = torch.zeros(2, model.config.c, *hm.shape[-2:], device=hm.device, dtype=hm.dtype)
    mu, s = model.anchor_params_at(k, anchors, hm, hs, ch)
    out[..., anchors] = io.gaussian(None if y is None else y[..., anchors], mu, s)
    rest = ~anchors
    mu, s = model.nonanchor_params_at(k, rest, hm, hs, out, ch)
    out[..., rest] = io.gaussian(None if y is None else y[..., rest], mu, s)
    return out


SpatialOrder = Callable[..., torch.Tensor]  # (model, io, k, y, hm, hs, ch) -> decodable slice (2, c, h, w)
SPATIAL_ORDERS: dict[str, tuple[SpatialOrder, type[SliceNetwork]]] = {
    "bisic": (raster_wavefront, WavefrontNetwork),
    "bisic-fast": (checkerboard, CheckerboardNetwork),
}


@dataclass(frozen=True)
class Compressed:
    streams: dict[str, bytes]
    checksum: int  # CRC32 chained over every coded symbol, z then y
    x_hat: torch.Tensor | None  # the reconstruction the decoder will produce, when asked for
    information_bits: float  # ideal size of the symbols under the coding models


class StereoLatentCodec:
    """Hyperprior x channel slices x spatial order, for both views at once.

    `exact` codes with the exact entropy path (format v3); otherwise with the float network
    (formats v1 and v2, kept so that their files still decode).
    """

    def __init__(self, model: BiSICBase, exact: bool = True) -> None:
        self.model = model.eval()
        self.exact = exact
        self.numerics: Arithmetic = FIXED_POINT if exact else FLOAT
        self.entropy = integer_entropy_model(model) if exact else self.model  # what computes the coder's inputs
        pmfs, minima, lengths = model.hyperprior.entropy_bottleneck.pmf_tables()
        self.z_tables = (categorical_tables(pmfs, lengths), minima, lengths)
        self.spatial, needs = SPATIAL_ORDERS[model.variant]
        if not isinstance(self.entropy, needs):
            raise TypeError(f"{type(model).__name__} lacks what {self.spatial.__name__} asks of a network ({needs.__name__})")

    def _z(self, io: SymbolIO, z: torch.Tensor | None, shape: tuple[int, int]) -> torch.Tensor:
        medians = self.numerics.medians(self.model)[None, :, None, None]
        m = medians.shape[1]
        rows = np.broadcast_to(np.arange(m)[None, :, None], (2, m, shape[0] * shape[1])).reshape(-1)
        target = None if z is None else self.numerics.symbols(to_views(z), medians)
        symbols = io.categorical(target, rows, *self.z_tables)
        return from_views(self.numerics.values(symbols.reshape(2, m, *shape).to(medians.device), medians))

    def _y(self, io: SymbolIO, y: torch.Tensor | None, hm: torch.Tensor, hs: torch.Tensor) -> torch.Tensor:
        model, c = self.entropy, self.model.config.c
        done: list[torch.Tensor] = []
        for k in range(model.config.slices):
            ch = model.channel_context(k, done)
            y_k = None if y is None else to_views(y[:, k * c:(k + 1) * c])
            done.append(model.lrp(k, hm, ch, self.spatial(model, io, k, y_k, hm, hs, ch)))
        return from_views(torch.cat(done, dim=1))

    @torch.no_grad()
    def compress(self, x: torch.Tensor, quality: float | None, reconstruct: bool = True, y: torch.Tensor | None = None) -> Compressed:
        """x (1, 3, 2, H, W), H and W multiples of 64 -> streams (and the decoder's reconstruction).

        The reconstruction costs a synthesis pass; skip it when only the file is wanted. `y` is
        x's analysis transform when the caller has it already (several qualities of one pair).
        """
        if x.dim() != 5 or x.shape[0] != 1:
            raise ValueError(f"StereoLatentCodec codes one pair at a time: x must be (1, 3, 2, H, W), not {tuple(x.shape)}")
        model = self.model
        y = model.scale_y(model.analysis(x) if y is None else y, quality)
        z = model.hyperprior.hyper_encoder(y)
        table = self.numerics.scale_table
        z_coder = SymbolEncoder(scale_table=table)
        z_hat = self._z(EncodeIO(z_coder, self.numerics), z, z.shape[-2:])
        hm, hs = self.entropy.hyperprior.decode(z_hat)
        y_coder = SymbolEncoder(z_coder.crc, table)
        y_hat = self._y(EncodeIO(y_coder, self.numerics), y, hm, hs)
        x_hat = self._synthesis(y_hat, quality) if reconstruct else None
        return Compressed(
            {"z": z_coder.finish(), "y": y_coder.finish()},
            y_coder.crc,
            x_hat,
            z_coder.information_bits + y_coder.information_bits,
        )

    def _synthesis(self, y_hat: torch.Tensor, quality: float | None) -> torch.Tensor:
        return self.model.synthesis(self.model.unscale_y(self.numerics.real(y_hat), quality))

    @torch.no_grad()
    def decompress(self, streams: dict[str, bytes], size: tuple[int, int], quality: float | None, checksum: int) -> torch.Tensor:
        table = self.numerics.scale_table
        z_coder = SymbolDecoder(streams["z"], scale_table=table)
        z_hat = self._z(DecodeIO(z_coder, self.numerics), None, (size[0] // 64, size[1] // 64))
        hm, hs = self.entropy.hyperprior.decode(z_hat.to(next(self.model.parameters()).device))
        y_coder = SymbolDecoder(streams["y"], z_coder.crc, table)
        y_hat = self._y(DecodeIO(y_coder, self.numerics), None, hm, hs)
        if y_coder.crc != checksum:
            raise CodingError(
                "decoded symbols do not match the encoder's checksum: the file is corrupted or this "
                "machine's arithmetic differs from the encoder's"
            )
        return self._synthesis(y_hat, quality)

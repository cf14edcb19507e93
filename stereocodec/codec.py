"""The codec proper: a pair of views <-> .sbic bytes, joining image I/O, coding and container."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .coding import CODER
from .container import Container, ContainerError, Stream, ViewInfo
from .image_io import InputError, View, check_pair, pair_tensor, padded_size, to_uint8
from .latent_codecs import StereoLatentCodec
from .models import _BiSICBase
from .weights import LoadedWeights, shipped_before


@dataclass(frozen=True)
class Encoded:
    data: bytes  # the .sbic file
    container: Container
    left: np.ndarray | None  # the reconstruction every decoder of this file produces (uint8 HWC)
    right: np.ndarray | None  # (None when encode was asked not to reconstruct)
    information_bits: float  # ideal payload size under the coding models


@dataclass(frozen=True)
class Decoded:
    container: Container
    left: np.ndarray
    right: np.ndarray


DEFAULT_QUALITY = 3


def resolve_quality(model: _BiSICBase, quality: int | None) -> tuple[int, int | None]:
    """(quality stored in the file, quality the network takes) for a requested level.

    Variable-rate weights take a level 0..levels-1 (default 3, the middle of six);
    single-rate weights (such as release checkpoints) have only level 0.
    """
    levels = model.config.qualities
    if levels == 0:
        if quality not in (None, 0):
            raise InputError("these weights have a single rate: quality must be 0")
        return 0, None
    quality = min(DEFAULT_QUALITY, levels - 1) if quality is None else quality
    if not 0 <= quality < levels:
        raise InputError(f"quality must be between 0 and {levels - 1} for these weights")
    return quality, quality


class Codec:
    """A loaded network ready to encode and decode stereo pairs."""

    def __init__(self, weights: LoadedWeights) -> None:
        self.weights = weights
        self.model = weights.model.eval()
        self.latents = StereoLatentCodec(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def quality_levels(self) -> int:
        return self.model.config.qualities

    def default_quality(self) -> int:
        return resolve_quality(self.model, None)[0]

    def encode(self, left: View, right: View, quality: int | None = None, reconstruct: bool = True) -> Encoded:
        check_pair(left, right)
        quality, q = resolve_quality(self.model, quality)
        h, w = left.pixels.shape[:2]
        x = pair_tensor(left.pixels, right.pixels).to(self.device)
        coded = self.latents.compress(x, q, reconstruct)
        ph, pw = padded_size(h, w)
        container = Container(
            variant=self.model.variant,
            weights_name=self.weights.name[:255],
            weights_fingerprint=self.weights.fingerprint,
            quality=quality,
            coder=CODER,
            views=(ViewInfo(h, w, left.mode), ViewInfo(h, w, right.mode)),
            padded_height=ph,
            padded_width=pw,
            symbols_checksum=coded.checksum,
            streams=tuple(Stream(name, data) for name, data in coded.streams.items()),
        )
        rec_l, rec_r = to_uint8(coded.x_hat, h, w) if reconstruct else (None, None)
        return Encoded(container.to_bytes(), container, rec_l, rec_r, coded.information_bits)

    def check_compatible(self, container: Container) -> None:
        """Refuse files made with other weights or another coder, naming both sides."""
        if container.variant != self.model.variant:
            raise ContainerError(f"file is {container.variant}, these weights are {self.model.variant}")
        if not self.weights.made(container.weights_fingerprint):
            shipped = shipped_before(container.weights_fingerprint)
            where = (
                f"; they shipped with stereo-codec commit {shipped['commit']}: `git show {shipped['commit']}:"
                f"weights/{shipped['variant']}.safetensors > old.safetensors`, then --weights old.safetensors"
                if shipped else "; decode with the same weights"
            )
            raise ContainerError(
                f"file was encoded with weights '{container.weights_name}' "
                f"({container.weights_fingerprint.hex()[:12]}), not '{self.weights.name}' "
                f"({self.weights.fingerprint.hex()[:12]}){where}"
            )
        if container.coder.split(".")[:2] != CODER.split(".")[:2]:
            raise ContainerError(f"file was coded by {container.coder}; this stereo-codec uses {CODER}")

    def decode(self, data: bytes) -> Decoded:
        container = Container.from_bytes(data)
        self.check_compatible(container)
        names = [s.name for s in container.streams]
        if names != ["z", "y"]:
            raise ContainerError(f"unexpected streams {names} (expected z, y)")
        left, right = container.views
        if (left.height, left.width) != (right.height, right.width):
            raise ContainerError("views of different sizes in one file are not supported")
        if padded_size(left.height, left.width) != (container.padded_height, container.padded_width):
            raise ContainerError("padded size does not match the view size")
        levels = self.quality_levels()
        if levels and container.quality >= levels:
            raise ContainerError(f"quality {container.quality} is not a level of these weights (0..{levels - 1})")
        q = container.quality if levels else None
        x_hat = self.latents.decompress(
            {s.name: s.data for s in container.streams},
            (container.padded_height, container.padded_width),
            q,
            container.symbols_checksum,
        )
        rec_l, rec_r = to_uint8(x_hat, left.height, left.width)
        return Decoded(container, rec_l, rec_r)

"""The codec proper: a pair of views <-> .sbic bytes, joining image I/O, coding and container.

`Codec` here is the engine over one loaded network and internal `View`s; the public
`stereocodec.Codec` (`stereocodec.api`) wraps it for paths, images and arrays.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from .coding.latent_codecs import StereoLatentCodec
from .coding.refinement import RefinedLatent, level_lambda, refine_latent
from .coding.range_coding import CODER, CodingError
from .container import Container, ContainerError, Stream, ViewInfo
from .io.images import InputError, View, check_pair, padded_size, pair_tensor, to_uint8
from .limits import check_size, min_y_bytes
from .nn.models import BiSICBase
from .nn.presets import DEFAULT_QUALITY, PAPER_LAMBDAS
from .store import shipped_before
from .weights import LoadedWeights


@dataclass(frozen=True)
class Encoded:
    data: bytes  # the .sbic file
    container: Container
    left: np.ndarray | None  # the reconstruction every decoder of this file produces (uint8 HWC)
    right: np.ndarray | None  # (None when encode was asked not to reconstruct)
    information_bits: float  # ideal payload size under the coding models
    refinement: RefinedLatent | None = None  # what latent refinement did (when the codec refines)


@dataclass(frozen=True)
class Decoded:
    container: Container
    left: np.ndarray
    right: np.ndarray



def split_quality(quality: float) -> tuple[int, int]:
    """(level, thousandths) of a quality on the continuous scale, rounded to 1/1000 of a level (what a file stores)."""
    level, thousandths = divmod(round(quality * 1000), 1000)
    return int(level), int(thousandths)


def network_quality(level: int, thousandths: int) -> float:
    """The quality the network takes for a stored (level, thousandths): an int for a trained level, bit-identical to it."""
    return level + thousandths / 1000 if thousandths else level


def resolve_quality(model: BiSICBase, quality: float | None) -> tuple[float, float | None]:
    """(quality stored in the file, quality the network takes) for a requested quality.

    Variable-rate weights take any quality from 0 to levels-1 (default 3, the middle of six),
    rounded to 1/1000: integers are the trained levels, values between blend their gains;
    single-rate weights (such as release checkpoints) have only quality 0.
    """
    levels = model.config.qualities
    if levels == 0:
        if quality not in (None, 0):
            raise InputError("these weights have a single rate: quality must be 0")
        return 0, None
    quality = min(DEFAULT_QUALITY, levels - 1) if quality is None else quality
    if not 0 <= quality <= levels - 1:
        raise InputError(f"quality must be between 0 and {levels - 1} for these weights")
    q = network_quality(*split_quality(quality))
    return q, q


class Codec:
    """A loaded network ready to encode and decode stereo pairs (of `View`s; `stereocodec.Codec` is the public one).

    Plain encodes and decodes may run in several threads at once; latent refinement and legacy
    decoding change process-wide torch state (`stereocodec.api` serialises them).
    """

    def __init__(self, weights: LoadedWeights, max_pixels: int | None = None, refine_steps: int = 0) -> None:
        """`max_pixels` per view: None for the default limit and the free-memory check.
        `refine_steps`: encoder-side latent refinement steps per encode (`coding.refinement`; 0: none)."""
        self.weights = weights
        self.max_pixels = max_pixels
        self.refine_steps = refine_steps
        self.model = weights.model.eval()
        self.latents = StereoLatentCodec(self.model, exact=True)  # what encode writes: format v3
        self._last_analysis: tuple[bytes, torch.Tensor] | None = None

    @property
    def device(self) -> torch.device:
        """Where the networks run (and the coder's tensors live)."""
        return next(self.model.parameters()).device

    def quality_levels(self) -> int:
        """How many trained quality levels the weights have (1 for release checkpoints)."""
        return self.model.config.qualities

    def default_quality(self) -> int:
        """The level encode uses when none is asked for."""
        return resolve_quality(self.model, None)[0]

    def check_size(self, height: int, width: int) -> None:
        """Refuse views this machine should not code (see `limits`), before any network runs."""
        check_size(height, width, self.model.variant, self.device, self.max_pixels)

    def encode(self, left: View, right: View, quality: float | None = None, reconstruct: bool = True,
               refine_steps: int | None = None) -> Encoded:
        """A pair to .sbic bytes at `quality`; `reconstruct` also returns the views every decoder of the file will produce.
        `refine_steps` replaces the codec's own for this encode (None: keep them)."""
        refine_steps = self.refine_steps if refine_steps is None else refine_steps
        check_pair(left, right)
        quality, q = resolve_quality(self.model, quality)
        level, thousandths = split_quality(quality)
        h, w = left.pixels.shape[:2]
        self.check_size(h, w)
        x = pair_tensor(left.pixels, right.pixels).to(self.device)
        y, refined = self._analysis(left, right, x), None
        if refine_steps:
            if q is None:
                raise InputError("latent refinement needs variable-rate weights (they record each level's lambda)")
            lam = level_lambda(self.weights.metadata.get("lambdas", PAPER_LAMBDAS), q)
            refined = refine_latent(self.model, x, y, q, lam, refine_steps, size=(h, w))
            y = refined.y
        coded = self.latents.compress(x, q, reconstruct, y)
        ph, pw = padded_size(h, w)
        container = Container(
            variant=self.model.variant,
            weights_name=self.weights.name[:255],
            weights_fingerprint=self.weights.fingerprint,
            quality=level,
            coder=CODER,
            views=(ViewInfo(h, w, left.mode), ViewInfo(h, w, right.mode)),
            padded_height=ph,
            padded_width=pw,
            symbols_checksum=coded.checksum,
            streams=tuple(Stream(name, data) for name, data in coded.streams.items()),
            quality_thousandths=thousandths,
            entropy_path="exact",
        )
        rec_l, rec_r = to_uint8(coded.x_hat, h, w) if reconstruct else (None, None)
        return Encoded(container.to_bytes(), container, rec_l, rec_r, coded.information_bits, refined)

    @torch.no_grad()
    def _analysis(self, left: View, right: View, x: torch.Tensor) -> torch.Tensor:
        """The analysis transform of x, kept for the last pair (by its pixels' hash): rate control encodes one pair many times.

        The cache is read and replaced as one tuple, so that threads coding other pairs at the same
        time never get each other's transform."""
        key = hashlib.blake2b(np.ascontiguousarray(left.pixels))
        key.update(np.ascontiguousarray(right.pixels))
        key.update(repr((left.pixels.shape, right.pixels.shape, str(self.device))).encode())
        last = self._last_analysis
        if last is None or last[0] != key.digest():
            last = self._last_analysis = (key.digest(), self.model.analysis(x))
        return last[1]

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
        """.sbic bytes back to the two views (checked against the file's weights and symbols checksum)."""
        return self.decode_container(Container.from_bytes(data))

    @cached_property
    def legacy_latents(self) -> StereoLatentCodec:
        """The float entropy model of formats v1 and v2, built when such a file is decoded."""
        return StereoLatentCodec(self.model, exact=False)

    def decode_container(self, container: Container) -> Decoded:
        """Decode an already parsed file (the CLI parses it once, to pick weights and refuse early)."""
        q = self.check_decodable(container)
        args = (
            {s.name: s.data for s in container.streams},
            (container.padded_height, container.padded_width),
            q,
            container.symbols_checksum,
        )
        if container.entropy_path == "exact":
            x_hat = self.latents.decompress(*args)
        else:
            x_hat = decode_legacy(self.legacy_latents, args, container.version)
        left = container.views[0]
        rec_l, rec_r = to_uint8(x_hat, left.height, left.width)
        return Decoded(container, rec_l, rec_r)

    def check_decodable(self, container: Container) -> float | None:
        """Every check a file must pass before any network runs; returns the quality the network takes."""
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
        if levels and container.quality_value > levels - 1:
            raise ContainerError(f"quality {container.quality_value} is outside these weights' range 0..{levels - 1}")
        q = network_quality(container.quality, container.quality_thousandths) if levels else None
        self.check_size(left.height, left.width)
        y_bytes, needed = len(container.streams[1].data), min_y_bytes(container.padded_height, container.padded_width, self.model.config.y_channels)
        if y_bytes < needed:
            raise ContainerError(
                f"stream 'y' has {y_bytes} bytes, fewer than the {needed} any {left.width}x{left.height} pair needs: "
                "the file is truncated or its header was edited"
            )
        return q


LEGACY_THREADS = (1, 2, 4, 8, 16)  # thread counts a legacy file is retried with, after this process's own


def decode_legacy(latents: StereoLatentCodec, args: tuple, version: int) -> torch.Tensor:
    """Decode a v1 or v2 payload, whose float entropy model must be computed as its encoder did.

    Its container CRCs have passed, so a range-decoder or checksum failure means this machine's
    float arithmetic differs from the encoder's; the thread count is the one setting a process can
    change (it changes the summation order), so the other usual counts are tried before giving up.
    """
    own = torch.get_num_threads()
    for threads in (own, *(t for t in LEGACY_THREADS if t != own)):
        torch.set_num_threads(threads)
        try:
            return latents.decompress(*args)
        except CodingError:
            continue
        finally:
            torch.set_num_threads(own)
    raise CodingError(
        f"this file is intact (its checksums match) but was written in format v{version} with the legacy "
        f"floating-point entropy model, which this machine computes differently from the encoder's, even "
        f"with {', '.join(map(str, LEGACY_THREADS))} threads: decode it on the machine that wrote it and "
        "encode the pair again with this version, whose v3 files decode on every machine"
    )

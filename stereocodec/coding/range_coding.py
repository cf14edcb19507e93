"""Entropy coding of integer symbols with constriction's range coder.

No network code here: the latent codecs hand over symbols with their model parameters.
A range coder (first in, first out) is used rather than ANS (last in, first out) because
the autoregressive decoder must read symbols in the order their parameters become known;
ANS would force the encoder to buffer a whole stream and code it backwards.

Gaussian symbols are the integers round(y - mu), coded under a zero-mean quantised
Gaussian whose scale is snapped to a fixed log-spaced table: only the table index must
agree between encoder and decoder, which keeps files decodable when floating-point
results differ in their last bits. Symbols outside a model's support are coded exactly
through an escape symbol followed by the value in 16-bit uniform chunks. A CRC32 of every
coded symbol travels with the file so that a decoder whose arithmetic drifted says so.
"""

from __future__ import annotations

import zlib
from importlib.metadata import version

import constriction
import numpy as np
import torch

from ..errors import StereoCodecError
from ..nn.entropy_models import SCALE_BOUND

SCALE_MIN, SCALE_MAX, SCALE_LEVELS = SCALE_BOUND, 256.0, 64  # the likelihood's scale floor is the table's first entry
SCALE_TABLE = np.exp(np.linspace(np.log(SCALE_MIN), np.log(SCALE_MAX), SCALE_LEVELS))
_LOG_STEP = (np.log(SCALE_MAX) - np.log(SCALE_MIN)) / (SCALE_LEVELS - 1)
GAUSSIAN_BOUND = 1 << 12  # |symbol| >= this is escaped
CATEGORICAL_PRECISION = 1 << 16  # factorized-prior tables are quantised to this many counts
CODER = f"constriction {version('constriction')}"

_model = constriction.stream.model
_GAUSSIAN = _model.QuantizedGaussian(-GAUSSIAN_BOUND, GAUSSIAN_BOUND)
_CATEGORICAL = _model.Categorical(perfect=False)
_CHUNK = _model.Uniform(1 << 16)


class CodingError(StereoCodecError):
    """The bitstream cannot be decoded with these weights; one-line message."""


def scale_indices(scales: torch.Tensor) -> np.ndarray:
    """Nearest table entry (in log scale) of each predicted scale, as int array."""
    s = torch.log(scales.detach().double().clamp_min(SCALE_MIN))
    idx = torch.round((s - np.log(SCALE_MIN)) / _LOG_STEP).clamp(0, SCALE_LEVELS - 1)
    return idx.to(torch.int64).cpu().numpy().reshape(-1)


def categorical_tables(pmfs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Integer-count tables (C, L+1) with an escape entry at column lengths[c]."""
    counts = np.maximum(1.0, np.round(pmfs * CATEGORICAL_PRECISION))
    counts[np.arange(pmfs.shape[1])[None, :] >= lengths[:, None]] = 0.0
    table = np.concatenate([counts, np.zeros((len(counts), 1))], axis=1)
    table[np.arange(len(table)), lengths] = 1.0
    return table


class SymbolEncoder:
    """One range-coded stream; `crc` chains over every symbol coded so far.

    `scale_table` holds the standard deviation of each scale index (formats v1 and v2 use
    SCALE_TABLE, v3 its exactly defined twin, `numerics.exact_scale_table`)."""

    def __init__(self, crc: int = 0, scale_table: np.ndarray = SCALE_TABLE) -> None:
        self._coder = constriction.stream.queue.RangeEncoder()
        self.crc = crc
        self.scale_table = scale_table
        self.information_bits = 0.0  # -log2 of the coded symbols' probabilities under the coding models

    def _escape_values(self, values: np.ndarray) -> None:
        # magnitude in two 16-bit chunks (escaped values are < 2^32), sign first
        mags = np.abs(values).astype(np.int64)
        if (mags >= 1 << 32).any():
            raise ValueError("latent value out of range (|value| >= 2^32): the input cannot be coded")
        words = np.stack([(values < 0).astype(np.int64), mags & 0xFFFF, mags >> 16], axis=1).reshape(-1)
        self._coder.encode(words.astype(np.int32), _CHUNK)
        self.information_bits += 16.0 * len(words)

    def gaussian(self, symbols: np.ndarray, scale_idx: np.ndarray) -> None:
        symbols = symbols.astype(np.int64).reshape(-1)
        self.crc = zlib.crc32(symbols.astype("<i8").tobytes(), self.crc)
        clipped = np.clip(symbols, -GAUSSIAN_BOUND, GAUSSIAN_BOUND)
        stds = self.scale_table[scale_idx]
        self._coder.encode(clipped.astype(np.int32), _GAUSSIAN, np.zeros(len(clipped)), stds)
        s, sd = torch.from_numpy(np.abs(clipped).astype(np.float64)), torch.from_numpy(stds)
        p = torch.special.ndtr((0.5 - s) / sd) - torch.special.ndtr((-0.5 - s) / sd)
        self.information_bits += float(-torch.log2(p.clamp_min(2.0**-24)).sum())
        escaped = np.abs(symbols) >= GAUSSIAN_BOUND
        if escaped.any():
            self._escape_values(symbols[escaped])

    def categorical(self, symbols: np.ndarray, rows: np.ndarray, tables: np.ndarray, minima: np.ndarray, lengths: np.ndarray) -> None:
        """Symbols (integer offsets from the median) of channels `rows` under per-channel tables."""
        symbols = symbols.astype(np.int64).reshape(-1)
        self.crc = zlib.crc32(symbols.astype("<i8").tobytes(), self.crc)
        index = symbols + minima[rows]
        escaped = (index < 0) | (index >= lengths[rows])
        index = np.where(escaped, lengths[rows], index)
        self._coder.encode(index.astype(np.int32), _CATEGORICAL, tables[rows])
        probs = tables[rows, index] / tables[rows].sum(axis=1)
        self.information_bits += float(-np.log2(probs).sum())
        if escaped.any():
            self._escape_values(symbols[escaped])

    def finish(self) -> bytes:
        return self._coder.get_compressed().astype("<u4").tobytes()


class SymbolDecoder:
    """Reads what `SymbolEncoder` wrote, in the same order and with the same models."""

    def __init__(self, data: bytes, crc: int = 0, scale_table: np.ndarray = SCALE_TABLE) -> None:
        if len(data) % 4:
            raise CodingError("corrupted stream (its length is not a whole number of 32-bit words)")
        self._coder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        self.crc = crc
        self.scale_table = scale_table

    def _decode(self, *args) -> np.ndarray:
        try:
            return np.asarray(self._coder.decode(*args), dtype=np.int64)
        except (AssertionError, ValueError, KeyError, RuntimeError):
            raise CodingError("corrupted stream (the range decoder found invalid data)") from None

    def _escape_values(self, n: int) -> np.ndarray:
        words = self._decode(_CHUNK, 3 * n).reshape(n, 3)
        mags = words[:, 1] | (words[:, 2] << 16)
        return np.where(words[:, 0] == 1, -mags, mags)

    def gaussian(self, scale_idx: np.ndarray) -> np.ndarray:
        n = len(scale_idx)
        symbols = self._decode(_GAUSSIAN, np.zeros(n), self.scale_table[scale_idx])
        escaped = np.abs(symbols) >= GAUSSIAN_BOUND
        if escaped.any():
            symbols[escaped] = self._escape_values(int(escaped.sum()))
        self.crc = zlib.crc32(symbols.astype("<i8").tobytes(), self.crc)
        return symbols

    def categorical(self, rows: np.ndarray, tables: np.ndarray, minima: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        index = self._decode(_CATEGORICAL, tables[rows])
        escaped = index >= lengths[rows]
        symbols = index - minima[rows]
        if escaped.any():
            symbols[escaped] = self._escape_values(int(escaped.sum()))
        self.crc = zlib.crc32(symbols.astype("<i8").tobytes(), self.crc)
        return symbols

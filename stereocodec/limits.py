"""Size limits checked before any network runs: a hostile or mistyped size fails in one line.

A .sbic header may declare views of up to 65535 x 65535 pixels, whatever its payload; like
Pillow's MAX_IMAGE_PIXELS, the codec refuses sizes above a pixel limit (raised with
--max-pixels) and above what free memory can hold for the network, and refuses streams too
short to code the declared size.
"""

from __future__ import annotations

import os

import torch

from .coding.range_coding import GAUSSIAN_BOUND
from .io.images import InputError

DEFAULT_MAX_PIXELS = 40_000_000  # per view (a 7680 x 4320 pair is 33 MP per view)
# Peak memory per pixel of one view (both views of the pair counted), measured as the peak
# resident memory of encoding 512 x 384 with reconstruction (530 B bisic-fast, 637 B bisic),
# with a margin of a fifth.
BYTES_PER_PIXEL = {"bisic-fast": 640, "bisic": 770}
# Fewest bits a y symbol can cost: the coder's leaky quantised Gaussian gives each of its
# 2 * GAUSSIAN_BOUND + 1 values at least 2^-24 of the probability, so the likeliest has at most
# 1 - 2 * GAUSSIAN_BOUND / 2^24 (0.0007 bits a symbol; 2 million zeros measure 0.00078).
MIN_BITS_PER_Y_SYMBOL = 0.9 * 2 * GAUSSIAN_BOUND / 2**24 / 0.6931471805599453


def free_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes the process can still allocate on `device`; None when the system does not say."""
    if torch.device(device).type == "cuda":
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_size(height: int, width: int, variant: str, device: torch.device | str, max_pixels: int | None) -> None:
    """Refuse views above `max_pixels` (None: the default limit, and the free-memory check)."""
    pixels = height * width
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if pixels > limit:
        raise InputError(
            f"views of {width}x{height} ({pixels / 1e6:.1f} MP each) exceed the limit of {limit / 1e6:.1f} MP "
            f"per view; --max-pixels {pixels} raises it"
        )
    if max_pixels is not None:  # chosen by the user: their call
        return
    need, free = pixels * BYTES_PER_PIXEL.get(variant, max(BYTES_PER_PIXEL.values())), free_memory(device)
    if free is not None and need > free:
        raise InputError(
            f"views of {width}x{height} need about {need / 2**30:.1f} GiB of memory for {variant}, more than the "
            f"{free / 2**30:.1f} GiB free; --max-pixels {pixels} tries anyway"
        )


def min_y_bytes(padded_height: int, padded_width: int, channels: int) -> int:
    """Fewest bytes the y stream can have for a file of this padded size (both views)."""
    symbols = 2 * channels * (padded_height // 16) * (padded_width // 16)
    return int(symbols * MIN_BITS_PER_Y_SYMBOL / 8)

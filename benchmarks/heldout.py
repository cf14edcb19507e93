"""Fixed crops of the held-out real pairs (`../shared/data/stereo`), the same for every benchmark
that quotes figures on them, so that their figures compare."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

PAIRS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "stereo"


def held_out_crops(size: int, across: Sequence[float]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(left, right) RGB uint8 crops of size x size from each held-out pair, centred vertically
    and, horizontally, at each fraction of the width in `across` (0.5: the middle)."""
    if not PAIRS.is_dir():
        raise SystemExit(f"the held-out pairs are not at {PAIRS}")
    crops = []
    for pair in sorted(p for p in PAIRS.iterdir() if p.is_dir()):
        views = [np.asarray(Image.open(next(pair.glob(f"{side}.*"))).convert("RGB")) for side in ("left", "right")]
        h, w = views[0].shape[:2]
        y0 = h // 2 - size // 2
        for fraction in across:
            x0 = int(w * fraction) - size // 2
            left, right = (np.ascontiguousarray(v[y0:y0 + size, x0:x0 + size]) for v in views)
            crops.append((left, right))
    return crops

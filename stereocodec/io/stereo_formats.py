"""Stereo photos as people already have them: MPO files and side-by-side images.

* MPO (CIPA DC-007, what 3D cameras such as the Fujifilm W3 write): one file, several
  JPEG frames; frame 0 is the left view and frame 1 the right view.
* Side-by-side: one image holding the left view in its left half (``parallel``, the
  usual layout of 3D TVs and VR) or the right view in its left half (``cross``, for
  cross-eyed free viewing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import first_line
from .images import InputError, View, to_view

MPO_EXTS = frozenset({".mpo"})


def is_mpo(path: Path) -> bool:
    """True for a visible file named like an MPO stereo photo."""
    return path.suffix.lower() in MPO_EXTS and not path.name.startswith(".")


def read_mpo(path: str | Path) -> tuple[View, View]:
    """The left (frame 0) and right (frame 1) views of an MPO file; frames after the second are ignored."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            frames = getattr(img, "n_frames", 1)
            if frames < 2:
                raise InputError(f"{path}: holds a single image, not a stereo pair (an MPO needs 2 frames)")
            views = []
            for index, label in ((0, f"{path.name} left"), (1, f"{path.name} right")):
                img.seek(index)
                img.load()
                views.append(to_view(img, label))
            return views[0], views[1]
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not an image") from None
    except (UnidentifiedImageError, OSError, EOFError, Image.DecompressionBombError, SyntaxError) as e:
        raise InputError(f"{path}: not a readable MPO file ({first_line(e)})") from None


def split_sbs(view: View, cross: bool = False, label: str = "side-by-side image") -> tuple[View, View]:
    """Cut a side-by-side image into (left, right); `cross` when the right view is on the left.

    The notices of the whole image stay with the left view only, so that they are shown once.
    """
    w = view.pixels.shape[1]
    if w % 2:
        raise InputError(f"{label}: is {w} px wide, an odd width that does not split into two equal views")
    first, second = (np.ascontiguousarray(half) for half in (view.pixels[:, : w // 2], view.pixels[:, w // 2 :]))
    left, right = (second, first) if cross else (first, second)
    return View(left, view.mode, view.notices), View(right, view.mode)


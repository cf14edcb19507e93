"""stereo-codec: a learned stereo image codec built on the BiSIC networks.

The Python API (docs/api.md): `encode`, `decode`, `info`, `Codec`, and the errors, all based on
`Error`. Importing the package stays cheap and free of torch: each name is imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from .errors import Error, Notice, StereoCodecError

if TYPE_CHECKING:  # what type checkers and editors see of the names `__getattr__` imports
    from .api import Codec, FileInfo, StreamInfo, decode, encode, info
    from .coding.range_coding import CodingError
    from .container import ContainerError
    from .io.images import InputError
    from .rate_control import TargetError
    from .store import WeightsNotInstalled
    from .weights import WeightsError

try:
    __version__ = version("stereo-codec")  # one source of truth: pyproject.toml
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"

_LAZY = {  # public name -> the module that defines it
    "encode": "api", "decode": "api", "info": "api", "Codec": "api", "FileInfo": "api", "StreamInfo": "api",
    "InputError": "io.images", "TargetError": "rate_control", "ContainerError": "container",
    "CodingError": "coding.range_coding", "WeightsError": "weights", "WeightsNotInstalled": "store",
}

__all__ = ["Error", "Notice", "StereoCodecError", "__version__", *_LAZY]


def __getattr__(name: str) -> object:
    """Import a public name on first use (PEP 562), so that `import stereocodec` loads no torch."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

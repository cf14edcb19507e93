"""stereo-codec: a learned stereo image codec built on the BiSIC networks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stereo-codec")  # one source of truth: pyproject.toml
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"

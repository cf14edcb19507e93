"""The one error family of stereo-codec: what the user can fix, told in one line.

Every error about the user's input, files or weights is an `Error` (a `ValueError`), raised by
the Python API and shown by the CLI as one `error:` line:

    Error                      (stereocodec.Error; StereoCodecError is the same class)
    ├── InputError             unusable images, options or paths
    │   └── TargetError        a --size, --bpp or --psnr no quality reaches (stereocodec.rate_control)
    ├── ContainerError         a .sbic file that is damaged, truncated, newer or for other weights
    ├── CodingError            a bitstream that does not decode (stereocodec.coding.range_coding)
    ├── WeightsError           a weights file that cannot be used (stereocodec.weights)
    │   └── WeightsNotInstalled  stored weights whose file is in the uninstalled weights archive
    ├── RunError               a training run that cannot start (stereocodec.train.loop)
    └── GrowthError            a network that does not grow into another (stereocodec.train.grow)

`Notice` is the warning category of things worth knowing that are not errors (an opaque alpha
channel dropped for coding, a grayscale view coded as RGB): the API warns with it, the CLI prints
it as a `note:` line.
"""

from __future__ import annotations


class Error(ValueError):
    """Base of every error about the user's input, files or weights; its message is one line."""


StereoCodecError = Error  # the name before the public API; kept so that existing code keeps working


class InputError(Error):
    """Unusable input or output path, image or option; the message is one line."""


class Notice(UserWarning):
    """Something the user should know that is not an error (how an input was converted for coding)."""


def first_line(error: BaseException, limit: int = 160) -> str:
    """The first line of an error's message (at most `limit` characters), or its type's name.

    Third-party errors (Pillow, torch, safetensors) may span many lines; a CLI error shows one.
    """
    lines = str(error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__

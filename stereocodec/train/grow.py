"""Function-preserving growth of a trained network into a wider preset (Net2Net-style widening).

A trained `small` network (48 latent channels) and a `wide` one (192) differ only in the width of
y, of the hyper-decoder's output, and of the inputs and hidden layers of the entropy model; `wide`
and `wide-mid` only in the width of the 1/8-resolution layers next to y. Growth places every
trained tensor inside the wider one so that the wide network first computes exactly what the
narrow one did: the old reconstruction, and the old channels' likelihoods. New channels start
with freshly initialised incoming weights, and with zero weights wherever they feed an old output
(the synthesis transform, the old channels' entropy parameters), so they cost a few bits and
change nothing until training gives them a use.

Channel maps: old latent channel i becomes channel s * i (s = new Y / old Y), which keeps every
channel in its slice and the stereo attention on the same channels (`BiSICBase.attend_latent`);
every other widened space (the mid layers, hidden layers) keeps its old channels first.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from ..errors import StereoCodecError
from ..nn.entropy_models import DERIVED_BUFFERS
from ..nn.models import BiSICBase, BiSICConfig

# Inputs of each entropy-model MLP, in the order the networks concatenate them (models.py).
_MLP_INPUTS = {
    "entropy_params_anchor_zero_": ("hm",),
    "entropy_params_nonanchor_zero_": ("hm", "ctx"),
    "entropy_params_anchor_list_": ("hm", "ch"),
    "entropy_params_nonanchor_list_": ("hm", "ctx", "ch"),
    "entropy_parameters_zero_": ("hm", "ctx"),
    "entropy_parameters_list_": ("hm", "ctx", "ch"),
    "LRP_Transform_zero": ("hm", "slice"),
    "LRP_Transform_list": ("hm", "ch", "slice"),
}
# Settings growth leaves alone: they must match.
_FIXED = ("N", "M", "slices", "qualities")


class GrowthError(StereoCodecError):
    """The source network does not embed in the target one."""


def can_grow(old: BiSICConfig, new: BiSICConfig) -> bool:
    """Whether `grow` applies: same fixed sizes, and every grown width at least the old one
    (the latent width by a whole factor)."""
    same = all(getattr(old, k) == getattr(new, k) for k in _FIXED) and new.mid_channels >= old.mid_channels
    wider = all(all(b >= a for a, b in zip(getattr(old, k), getattr(new, k)))
                and len(getattr(old, k)) == len(getattr(new, k)) for k in ("ep_hidden", "lrp_hidden", "cc_hidden"))
    return same and wider and new.y_channels % old.y_channels == 0 and old.ch_channels == new.ch_channels


class _Spaces:
    """Where each old channel of every widened feature space lands in the new network."""

    def __init__(self, old: BiSICConfig, new: BiSICConfig) -> None:
        self.stride = new.y_channels // old.y_channels
        self.old, self.new = old, new

    def space(self, name: str, old_cfg: bool = False) -> int:
        cfg = self.old if old_cfg else self.new
        return {"y": cfg.y_channels, "hm": 2 * cfg.y_channels, "ctx": 2 * cfg.c, "ch": cfg.ch_channels,
                "slice": cfg.c}[name]

    def map(self, name: str, count: int | None = None) -> torch.Tensor:
        """New indices of the old channels of a space (of its first `count` channels)."""
        n = self.space(name, old_cfg=True) if count is None else count
        if name in ("y", "slice"):
            return torch.arange(n) * self.stride
        return torch.arange(n)

    def concat(self, names: tuple[str, ...]) -> torch.Tensor:
        parts, offset = [], 0
        for name in names:
            parts.append(self.map(name) + offset)
            offset += self.space(name)
        return torch.cat(parts)


def _channel_maps(name: str, spaces: _Spaces, old_sd: dict) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(map of dim 0, map of dim 1) of an old tensor into the new one (None: the same channels)."""
    y = spaces.map
    if name.startswith("Conv3DEncoder_B.2."):
        return y("y"), None
    if name == "Conv3DDecoder_A.0.weight":  # ConvTranspose: (in, out, ...)
        return y("y"), None
    if name == "hyperprior.hyper_encoder.0.weight":
        return None, y("y")
    if name.startswith(("hyperprior.hyper_decoder_means.4.", "hyperprior.hyper_decoder_scales.4.")):
        return y("hm"), None
    if name in ("gain", "inv_gain"):
        return None, y("y")
    if name.startswith(("context_prediction_CKBD_list.", "context_prediction_list.")):
        return y("ctx"), (y("slice") if name.endswith(".weight") else None)
    for prefix in (*_MLP_INPUTS, "channel_context_prediction_list."):
        if name.startswith(prefix):
            return _mlp_maps(name, prefix, spaces, old_sd)
    return None, None


def _mlp_maps(name: str, prefix: str, spaces: _Spaces, old_sd: dict):
    """Maps of one layer of an entropy-model MLP: inputs as concatenated, hidden layers keep
    their old units first, the last layer writes the slice's channels (or the channel context)."""
    module = name.rsplit(".", 2)[0]  # e.g. entropy_params_anchor_list_means.0
    layer = int(name.rsplit(".", 2)[1])
    last = max(int(k.rsplit(".", 2)[1]) for k in old_sd if k.startswith(module + ".") and k.endswith(".weight"))
    if prefix == "channel_context_prediction_list.":
        k = int(module.split(".")[1]) + 1  # slices it reads
        first_in, out = spaces.map("y", k * spaces.old.c), None
    else:
        first_in, out = spaces.concat(_MLP_INPUTS[prefix]), spaces.map("slice")
    out_map = out if layer == last else torch.arange(old_sd[name].shape[0])
    in_map = first_in if layer == 0 else None
    if name.endswith(".bias"):
        return out_map, None
    return out_map, in_map


@torch.no_grad()
def grow(old: BiSICBase, new: BiSICBase) -> int:
    """Write the trained `old` network into the freshly initialised `new` one (in place) so that
    `new` reproduces `old`'s reconstruction and old channels' likelihoods. Returns the number of
    tensors carried over. Raises GrowthError when `old` does not embed in `new`."""
    if type(old) is not type(new) or not can_grow(old.config, new.config):
        raise GrowthError(f"a {old.variant} network {asdict(old.config)} does not grow into "
                          f"a {new.variant} network {asdict(new.config)}")
    spaces = _Spaces(old.config, new.config)
    old_sd, new_sd = old.state_dict(), new.state_dict()
    transposed = {f"{n}.weight" for n, m in new.named_modules() if isinstance(m, torch.nn.ConvTranspose3d)}
    carried = 0
    for name, target in new_sd.items():
        source = old_sd.get(name)
        if source is None:
            raise GrowthError(f"the source network has no tensor {name}")
        if source.shape == target.shape and (name not in ("gain", "inv_gain") or spaces.stride == 1):
            target.copy_(source)
            carried += 1
            continue
        if name.rsplit(".", 1)[-1] in (*DERIVED_BUFFERS, "mask"):
            continue  # derived buffers (coder tables, bounds, context masks): the new network's own are right
        rows, cols = _channel_maps(name, spaces, old_sd)
        rows = torch.arange(source.shape[0]) if rows is None else rows
        if name in ("gain", "inv_gain"):
            # New channels start at each level's median gain: the same quantiser step as the old ones.
            target.copy_((NEW_CHANNEL_GAIN if name == "gain" else 1 / NEW_CHANNEL_GAIN) * source.median(dim=1, keepdim=True).values.expand_as(target))
            target[:, cols] = source
        elif source.dim() == 1:
            target[rows] = source
        else:
            cols = torch.arange(source.shape[1]) if cols is None else cols
            if name in transposed:  # (in, out, ...): the roles of the two dimensions swap
                _embed(target.transpose(0, 1), source.transpose(0, 1), cols, rows)
            else:
                _embed(target, source, rows, cols)
        carried += 1
    new.load_state_dict(new_sd)
    _quiet_new_outputs(new, spaces)
    return carried


def _embed(target: torch.Tensor, source: torch.Tensor, outputs: torch.Tensor, inputs: torch.Tensor) -> None:
    """Write `source` (out, in, ...) at the old outputs x old inputs of `target` (in place, also
    through a view); the old outputs see nothing of the new inputs, new outputs keep their values."""
    block = target[outputs]
    block.zero_()
    block[:, inputs] = source
    target[outputs] = block


# Predicted scale of every new latent channel at the start: about the spread of the new channels'
# values (std 0.2-0.6 over the levels with the default initialisation and the levels' median gains).
NEW_CHANNEL_SCALE = 0.25
NEW_CHANNEL_GAIN = 0.5


@torch.no_grad()
def _quiet_new_outputs(new: BiSICBase, spaces: _Spaces) -> None:
    """The entropy model's outputs for the new channels start as constants: mean 0, no residual
    correction, scale NEW_CHANNEL_SCALE. Random rows there would predict the new values so badly
    that they cost several times the old channels' bits; zero rows still learn (their inputs are
    the trained hidden units)."""
    fresh = torch.ones(new.config.c, dtype=torch.bool)
    fresh[spaces.map("slice")] = False
    for name, module in new.named_modules():
        if not any(name.startswith(p) for p in _MLP_INPUTS) or not isinstance(module, torch.nn.Sequential):
            continue
        last = module[-1]
        last.weight[fresh] = 0
        last.bias[fresh] = NEW_CHANNEL_SCALE if name.endswith("scales") or "_scales." in name else 0.0

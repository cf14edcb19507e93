"""The BiSIC and BiSIC-Fast networks, with the release's module and tensor names.

`forward` is the release's forward pass (train and eval mode) so that parity with the
released checkpoints can be tested; real coding lives in `stereocodec.coding`, which
calls the per-slice pieces below (`hyperprior.decode`, `slice_context`, `slice_params`, `lrp`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .entropy_models import FactorizedPrior, GaussianConditional, quantize
from .layers import HalfTanh, MaskedConv3d, MutualAttention, conv3d, conv3d_k3, deconv3d, mlp
from .presets import DEFAULT_SLICES, VARIANTS



@dataclass(frozen=True)
class BiSICConfig:
    """Sizes of a network. The release uses N = M = 192 and the hidden widths below.

    N is the width of the image transforms, M that of the hyper-latent z, and `latent` the
    channels of y per view: the release ties y to N; our presets widen y (the rate-distortion
    ceiling) without paying for wide full-resolution transforms. 0 means "as the release" (N).
    The mutual attention on y (and on y_hat) keeps width N: it acts on every (latent / N)-th
    channel of y and the others pass by (see `BiSICBase.attend_latent`). At 192 channels each
    of those blocks would hold 6.2 M parameters; and the strided choice keeps a narrow trained
    network embedded in a wide one (`stereocodec.train.grow`), for either variant's slicing.
    """

    N: int = 192
    M: int = 192
    slices: int = 12
    ep_hidden: tuple[int, ...] = (384, 192, 96)
    lrp_hidden: tuple[int, ...] = (384, 192, 64)
    cc_hidden: tuple[int, ...] = (224, 192, 128)
    qualities: int = 0  # number of quality levels with learned gain vectors (0: release)
    latent: int = 0  # channels of y per view (0: N, as the release)
    context: int = 0  # channels of the channel context per view (0: 8 c, as the release)
    mid: int = 0  # channels of the 1/8-resolution layers next to y (0: N, as the release)

    @property
    def y_channels(self) -> int:
        return self.latent or self.N

    @property
    def mid_channels(self) -> int:
        return self.mid or self.N

    @property
    def ch_channels(self) -> int:
        """Width of the channel context (and of `chan_SAM`, whose cost grows with its square):
        8 c in the release; a widened y keeps the width an N-channel y would have."""
        return self.context or 8 * (self.N if self.latent else self.y_channels) // self.slices

    @property
    def c(self) -> int:
        """Channels of one slice of y."""
        return self.y_channels // self.slices


def to_views(x: torch.Tensor) -> torch.Tensor:
    """(B, C, 2, H, W) -> (2B, C, H, W), left and right interleaved, to share per-view weights."""
    b, c, _, h, w = x.shape
    return x.transpose(1, 2).reshape(2 * b, c, h, w)


def from_views(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `to_views`."""
    b2, c, h, w = x.shape
    return x.reshape(b2 // 2, 2, c, h, w).transpose(1, 2)


def split_lr(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    v = x.reshape(x.shape[0] // 2, 2, *x.shape[1:])
    return v[:, 0], v[:, 1]


def join_lr(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    return torch.stack([left, right], dim=1).flatten(0, 1)


class Hyperprior(nn.Module):
    """3-D hyper-analysis/synthesis with a factorized prior on each view's z.

    Y is the channels of y, M those of z (the release has Y = M = N).
    """

    def __init__(self, Y: int, M: int) -> None:
        super().__init__()
        self.hyper_encoder = nn.Sequential(conv3d_k3(Y, M), _leaky(), conv3d(M, M), _leaky(), conv3d(M, M))
        self.entropy_bottleneck = FactorizedPrior(M)
        self.hyper_decoder_means = self._decoder(Y, M)
        self.hyper_decoder_scales = self._decoder(Y, M)

    @staticmethod
    def _decoder(Y: int, M: int) -> nn.Sequential:
        return nn.Sequential(deconv3d(M, M), _leaky(), deconv3d(M, M), _leaky(), conv3d_k3(M, 2 * Y))

    def decode(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-view (hm, hs), each (2B, 2Y, h, w), from z_hat (B, M, 2, h/4, w/4)."""
        return to_views(self.hyper_decoder_means(z_hat)), to_views(self.hyper_decoder_scales(z_hat))

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """In training the likelihood of z sees uniform noise while the hyper-decoder sees z rounded
        around the medians with a straight-through gradient, as the release trains it; in eval both
        see the rounded z."""
        z = to_views(self.hyper_encoder(y))
        z_noisy, z_lik = self.entropy_bottleneck(z)
        if self.training:
            medians = self.entropy_bottleneck.medians().detach()[None, :, None, None]
            z_hat = quantize(z.float(), "ste", medians)
        else:
            z_hat = z_noisy
        z_hat, z_lik = from_views(z_hat), from_views(z_lik)
        hm, hs = self.decode(z_hat)
        return hm, hs, z_hat, z_lik


def _leaky() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.01)


class BiSICBase(nn.Module):
    """What both variants share: the 3-D codec, hyperprior, channel context and LRP."""

    variant: str

    def __init__(self, config: BiSICConfig) -> None:
        super().__init__()
        self.config = config
        N, Y, K, c, C = config.N, config.y_channels, config.slices, config.c, config.ch_channels
        H = config.mid_channels
        if Y % K or Y % N:
            raise ValueError(f"{Y} latent channels do not split into {K} slices or into groups of {N} channels")
        gelu = nn.GELU
        self.Conv3DEncoder_A = nn.Sequential(conv3d(3, N), gelu(), conv3d(N, N))
        self.En_Transfer_A = MutualAttention(N)
        self.Conv3DEncoder_B = nn.Sequential(conv3d(N, H), gelu(), conv3d(H, Y))
        self.En_Transfer_B = MutualAttention(N)
        self.De_Transfer_A = MutualAttention(N)
        self.Conv3DDecoder_A = nn.Sequential(deconv3d(Y, H), gelu(), deconv3d(H, N))
        self.De_Transfer_B = MutualAttention(N)
        self.Conv3DDecoder_B = nn.Sequential(deconv3d(N, N), gelu(), deconv3d(N, 3))
        self.hyperprior = Hyperprior(Y, config.M)
        self.gaussian_conditional = GaussianConditional()
        self.channel_context_prediction_list = nn.ModuleList(
            mlp([c * k, *config.cc_hidden, C]) for k in range(1, K)
        )
        self.chan_SAM = MutualAttention(C)
        self.LRP_Transform_zero = mlp([2 * Y + c, *config.lrp_hidden, c])
        self.LRP_Transform_list = nn.ModuleList(mlp([2 * Y + c + C, *config.lrp_hidden, c]) for _ in range(1, K))
        self.lrp_squash = HalfTanh()
        if config.qualities:
            # Variable rate: per-quality channel gains on y (before quantisation) and inverse gains after.
            self.gain = nn.Parameter(torch.ones(config.qualities, Y))
            self.inv_gain = nn.Parameter(torch.ones(config.qualities, Y))

    # --- transforms -------------------------------------------------------------------
    def attend_latent(self, block: MutualAttention, y: torch.Tensor) -> torch.Tensor:
        """Apply a width-N stereo attention block to every (Y / N)-th channel of y (B, Y, 2, h, w).

        In the release Y = N, so this is the block applied to all of y.
        """
        stride = self.config.y_channels // self.config.N
        if stride == 1:
            return block.forward_stacked(y)
        b, _, v, h, w = y.shape
        groups = y.reshape(b, self.config.N, stride, v, h, w)
        attended = block.forward_stacked(groups[:, :, 0])
        return torch.cat([attended[:, :, None], groups[:, :, 1:]], dim=2).reshape(y.shape)

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 2, H, W) images in [0, 1] -> y (B, Y, 2, H/16, W/16)."""
        h = self.En_Transfer_A.forward_stacked(self.Conv3DEncoder_A(x))
        return self.attend_latent(self.En_Transfer_B, self.Conv3DEncoder_B(h))

    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        h = self.Conv3DDecoder_A(self.attend_latent(self.De_Transfer_A, y_hat))
        return self.Conv3DDecoder_B(self.De_Transfer_B.forward_stacked(h))

    def _gain(self, name: str, quality: torch.Tensor | float | None, ref: torch.Tensor) -> torch.Tensor | None:
        """The gain vector of a quality: a trained level's row, or between two levels their log-domain blend.

        A fractional quality l + t takes g_l^(1-t) * g_(l+1)^t (Cui et al., CVPR 2021, "Asymmetric
        Gained Deep Image Compression"), so rate and distortion move smoothly between the trained
        levels; an integral quality (int or float) takes the trained row itself, bit for bit.
        """
        if not self.config.qualities:
            return None
        if quality is None:
            raise ValueError("this network is variable-rate: a quality level is required")
        table = torch.abs(getattr(self, name))  # (levels, N)
        q = torch.as_tensor(quality, device=ref.device).reshape(-1)
        if not q.is_floating_point():
            return table[q][:, :, None, None, None]  # (B or 1, N, 1, 1, 1)
        low = q.floor().long().clamp(0, self.config.qualities - 1)
        high = (low + 1).clamp(max=self.config.qualities - 1)
        t = (q - low).to(table.dtype)[:, None]
        blend = torch.exp((1 - t) * torch.log(table[low]) + t * torch.log(table[high]))
        g = torch.where(t == 0, table[low], blend)
        return g[:, :, None, None, None]

    def scale_y(self, y: torch.Tensor, quality: torch.Tensor | float | None) -> torch.Tensor:
        g = self._gain("gain", quality, y)
        return y if g is None else y * g

    def unscale_y(self, y_hat: torch.Tensor, quality: torch.Tensor | float | None) -> torch.Tensor:
        g = self._gain("inv_gain", quality, y_hat)
        return y_hat if g is None else y_hat * g

    # --- per-slice pieces of the entropy model (shared by forward and the coder) ----------
    def channel_context(self, k: int, y_hat_done: list[torch.Tensor]) -> torch.Tensor | None:
        """Channel context of slice k from the decoded slices (2B, c, h, w) of both views."""
        if k == 0:
            return None
        ch = self.channel_context_prediction_list[k - 1](torch.cat(y_hat_done[:k], dim=1))
        ch_l, ch_r = self.chan_SAM(*split_lr(ch))
        return join_lr(ch_l, ch_r)

    def lrp(self, k: int, hm: torch.Tensor, ch: torch.Tensor | None, y_hat: torch.Tensor) -> torch.Tensor:
        """Latent residual prediction: y_hat + 0.5 tanh(LRP)."""
        if k == 0:
            r = self.LRP_Transform_zero(torch.cat([hm, y_hat], dim=1))
        else:
            r = self.LRP_Transform_list[k - 1](torch.cat([hm, ch, y_hat], dim=1))
        return y_hat + self.lrp_squash(r)

    def slice_context(self, k: int, y_ctx: torch.Tensor) -> torch.Tensor:
        """Spatial context (2B, 2c, h, w) of slice k from context values y_ctx (B, c, 2, h, w)."""
        raise NotImplementedError

    def slice_params(
        self, k: int, hm: torch.Tensor, hs: torch.Tensor, ctx: torch.Tensor, ch: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, scales), each (2B, c, h, w), of slice k."""
        raise NotImplementedError

    def context_input(self, y_slice: torch.Tensor) -> torch.Tensor:
        """What the release's forward feeds the spatial context: noisy y (train), round(y) (eval)."""
        return quantize(y_slice, "noise") if self.training else torch.round(y_slice)

    # --- the release's forward pass -----------------------------------------------------
    def forward(self, x: torch.Tensor, quality: torch.Tensor | int | None = None) -> dict:
        """x: (B, 3, 2, H, W) in [0, 1], H and W multiples of 64."""
        y = self.scale_y(self.analysis(x).float(), quality)  # float32 under mixed precision
        return self.forward_latent(y, quality)

    def forward_latent(self, y: torch.Tensor, quality: torch.Tensor | int | None = None) -> dict:
        """The forward pass from the gained latent y on (what the encoder's latent refinement varies)."""
        hm, hs, z_hat, z_lik = self.hyperprior(y)
        c = self.config.c
        y_hat_done: list[torch.Tensor] = []
        y_lik = []
        for k in range(self.config.slices):
            y_slice = y[:, k * c:(k + 1) * c]
            ctx = self.slice_context(k, self.context_input(y_slice))
            ch = self.channel_context(k, y_hat_done)
            means, scales = self.slice_params(k, hm, hs, ctx, ch)
            ys = to_views(y_slice)
            y_lik.append(self.gaussian_conditional(ys, scales, means))
            y_hat = quantize(ys, "ste", means)
            y_hat_done.append(self.lrp(k, hm, ch, y_hat))
        y_hat = from_views(torch.cat(y_hat_done, dim=1))
        x_hat = self.synthesis(self.unscale_y(y_hat, quality))
        return {
            "x_hat": x_hat,
            "likelihoods": {"y": from_views(torch.cat(y_lik, dim=1)), "z": z_lik},
            "y_hat": y_hat,
        }

    def aux_loss(self) -> torch.Tensor:
        return self.hyperprior.entropy_bottleneck.aux_loss()


def _params(net_m: nn.Module, net_s: nn.Module, h_m: torch.Tensor, h_s: torch.Tensor, extra: list) -> tuple:
    return net_m(torch.cat([h_m, *extra], dim=1)), net_s(torch.cat([h_s, *extra], dim=1))


class BiSIC(BiSICBase):
    """BiSIC: 12 channel slices, masked 3-D spatial context (raster autoregression)."""

    variant = "bisic"

    def __init__(self, config: BiSICConfig = BiSICConfig()) -> None:
        super().__init__(config)
        Y, K, c, C, hid = config.y_channels, config.slices, config.c, config.ch_channels, config.ep_hidden
        self.context_prediction_list = nn.ModuleList(MaskedConv3d(c, 2 * c) for _ in range(K))
        self.entropy_parameters_zero_means = mlp([2 * Y + 2 * c, *hid, c])
        self.entropy_parameters_zero_scales = mlp([2 * Y + 2 * c, *hid, c])
        self.entropy_parameters_list_means = nn.ModuleList(mlp([2 * Y + 2 * c + C, *hid, c]) for _ in range(1, K))
        self.entropy_parameters_list_scales = nn.ModuleList(mlp([2 * Y + 2 * c + C, *hid, c]) for _ in range(1, K))

    def slice_context(self, k: int, y_ctx: torch.Tensor) -> torch.Tensor:
        return to_views(self.context_prediction_list[k](y_ctx))

    def slice_params(self, k: int, hm: torch.Tensor, hs: torch.Tensor, ctx: torch.Tensor,
                     ch: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if k == 0:
            return _params(self.entropy_parameters_zero_means, self.entropy_parameters_zero_scales, hm, hs, [ctx])
        return _params(
            self.entropy_parameters_list_means[k - 1], self.entropy_parameters_list_scales[k - 1], hm, hs, [ctx, ch]
        )


def anchor_mask(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """Checkerboard anchors: (even row, odd col) and (odd row, even col); bool (h, w)."""
    r = torch.arange(h, device=device)[:, None]
    c = torch.arange(w, device=device)[None, :]
    return (r + c) % 2 == 1


class BiSICFast(BiSICBase):
    """BiSIC-Fast: 6 channel slices, two-pass stereo checkerboard context."""

    variant = "bisic-fast"

    def __init__(self, config: BiSICConfig = BiSICConfig(slices=6)) -> None:
        super().__init__(config)
        Y, K, c, C, hid = config.y_channels, config.slices, config.c, config.ch_channels, config.ep_hidden
        self.context_prediction_CKBD_list = nn.ModuleList(
            nn.Conv3d(c, 2 * c, kernel_size=(3, 5, 5), padding=(1, 2, 2)) for _ in range(K)
        )
        self.entropy_params_anchor_zero_means = mlp([2 * Y, *hid, c])
        self.entropy_params_anchor_zero_scales = mlp([2 * Y, *hid, c])
        self.entropy_params_nonanchor_zero_means = mlp([2 * Y + 2 * c, *hid, c])
        self.entropy_params_nonanchor_zero_scales = mlp([2 * Y + 2 * c, *hid, c])
        per_slice = lambda width: nn.ModuleList(mlp([width, *hid, c]) for _ in range(1, K))  # noqa: E731
        self.entropy_params_anchor_list_means = per_slice(2 * Y + C)
        self.entropy_params_anchor_list_scales = per_slice(2 * Y + C)
        self.entropy_params_nonanchor_list_means = per_slice(2 * Y + 2 * c + C)
        self.entropy_params_nonanchor_list_scales = per_slice(2 * Y + 2 * c + C)

    def slice_context(self, k: int, y_ctx: torch.Tensor) -> torch.Tensor:
        anchors = anchor_mask(*y_ctx.shape[-2:], device=y_ctx.device)
        return to_views(self.context_prediction_CKBD_list[k](y_ctx * anchors))

    def anchor_params(self, k: int, hm: torch.Tensor, hs: torch.Tensor,
                      ch: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, scales) valid at anchor positions (they need no spatial context)."""
        if k == 0:
            return _params(self.entropy_params_anchor_zero_means, self.entropy_params_anchor_zero_scales, hm, hs, [])
        return _params(
            self.entropy_params_anchor_list_means[k - 1], self.entropy_params_anchor_list_scales[k - 1], hm, hs, [ch]
        )

    def nonanchor_params(self, k: int, hm: torch.Tensor, hs: torch.Tensor, ctx: torch.Tensor,
                         ch: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if k == 0:
            return _params(
                self.entropy_params_nonanchor_zero_means, self.entropy_params_nonanchor_zero_scales, hm, hs, [ctx]
            )
        return _params(
            self.entropy_params_nonanchor_list_means[k - 1],
            self.entropy_params_nonanchor_list_scales[k - 1],
            hm, hs, [ctx, ch],
        )

    def anchor_params_at(self, k: int, anchors: torch.Tensor, hm: torch.Tensor, hs: torch.Tensor,
                         ch: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, scales) at the anchors (bool (h, w)) only, each (2B, c, P): what the coder reads."""
        mu, s = self.anchor_params(k, hm, hs, ch)
        return mu[..., anchors], s[..., anchors]

    def nonanchor_params_at(self, k: int, rest: torch.Tensor, hm: torch.Tensor, hs: torch.Tensor, y_anchors: torch.Tensor,
                            ch: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, scales) at the non-anchors `rest`, each (2B, c, P), from the decoded anchors y_anchors (2B, c, h, w)."""
        mu, s = self.nonanchor_params(k, hm, hs, self.slice_context(k, from_views(y_anchors)), ch)
        return mu[..., rest], s[..., rest]

    def slice_params(self, k: int, hm: torch.Tensor, hs: torch.Tensor, ctx: torch.Tensor,
                     ch: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        anchors = anchor_mask(*hm.shape[-2:], device=hm.device)
        mu_a, s_a = self.anchor_params(k, hm, hs, ch)
        mu_n, s_n = self.nonanchor_params(k, hm, hs, ctx, ch)
        return torch.where(anchors, mu_a, mu_n), torch.where(anchors, s_a, s_n)


MODELS: dict[str, type[BiSICBase]] = {"bisic": BiSIC, "bisic-fast": BiSICFast}


def official_config(variant: str) -> BiSICConfig:
    """The release's configuration (N = M = 192)."""
    return BiSICConfig(slices=DEFAULT_SLICES[variant])


def build_model(variant: str, config: BiSICConfig | None = None) -> BiSICBase:
    if variant not in MODELS:
        raise ValueError(f"unknown variant {variant!r} (choose from {', '.join(VARIANTS)})")
    return MODELS[variant](config or official_config(variant))

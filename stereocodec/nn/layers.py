"""Network building blocks of the released BiSIC networks (names match the release)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3d(in_ch: int, out_ch: int) -> nn.Conv3d:
    """The release's stereo 3-D conv: depth tap 3 lets each view see both views."""
    return nn.Conv3d(in_ch, out_ch, kernel_size=(3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2))


def deconv3d(in_ch: int, out_ch: int) -> nn.ConvTranspose3d:
    return nn.ConvTranspose3d(
        in_ch, out_ch, kernel_size=(3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), output_padding=(0, 1, 1)
    )


def conv3d_k3(in_ch: int, out_ch: int) -> nn.Conv3d:
    return nn.Conv3d(in_ch, out_ch, kernel_size=3, stride=1, padding=1)


def mlp(widths: list[int]) -> nn.Sequential:
    """1x1 Conv2d stack with GELU between layers (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        if i:
            layers.append(nn.GELU())
        layers.append(nn.Conv2d(a, b, kernel_size=1))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """compressai's ResidualBlock: two 3x3 convs with LeakyReLU and an identity/1x1 skip."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), 0.01)
        out = F.leaky_relu(self.conv2(out), 0.01)
        return out + (self.skip(x) if self.skip is not None else x)


class EfficientAttention(nn.Module):
    """Linear-complexity attention (Shen et al.): softmax on Q over channels, on K over positions."""

    def __init__(self, channels: int, heads: int = 8) -> None:
        super().__init__()
        embed = channels // 2
        self.heads = heads
        self.conv_q = nn.Conv2d(channels, embed, 1)
        self.conv_k = nn.Conv2d(channels, embed, 1)
        self.conv_v = nn.Conv2d(channels, embed, 1)
        self.projection_o = nn.Conv2d(embed, channels, 1)

    def forward(self, q_in: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor) -> torch.Tensor:
        b, _, h, w = q_in.shape
        e = self.conv_q.out_channels
        d = e // self.heads
        q = self.conv_q(q_in).reshape(b, self.heads, d, h * w).softmax(dim=2)
        k = self.conv_k(k_in).reshape(b, self.heads, d, h * w).softmax(dim=3)
        v = self.conv_v(v_in).reshape(b, self.heads, d, h * w)
        context = k @ v.transpose(2, 3)  # (b, heads, d, d)
        out = context.transpose(2, 3) @ q  # (b, heads, d, n)
        return self.projection_o(out.reshape(b, e, h, w))


class MutualAttention(nn.Module):
    """Bidirectional stereo attention block: each view attends to the other and refines itself."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.rb1 = ResidualBlock(channels, channels)
        self.rb2 = ResidualBlock(channels, channels)
        self.cross_attnA = EfficientAttention(channels)
        self.self_attenA = EfficientAttention(channels)
        self.cross_attenB = EfficientAttention(channels)
        self.self_attenB = EfficientAttention(channels)
        self.refine = nn.Sequential(ResidualBlock(3 * channels, 2 * channels), ResidualBlock(2 * channels, channels))

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.rb2(self.rb1(left))
        b = self.rb2(self.rb1(right))
        s_la = self.self_attenA(*(3 * [self.cross_attnA(a, b, b)]))
        s_ra = self.self_attenA(*(3 * [self.cross_attnA(b, a, a)]))
        s_lb = self.self_attenB(*(3 * [self.cross_attenB(b, b, a)]))
        s_rb = self.self_attenB(*(3 * [self.cross_attenB(a, a, b)]))
        out_l = left + self.refine(torch.cat([s_la, s_lb, a], dim=1))
        out_r = right + self.refine(torch.cat([s_ra, s_rb, b], dim=1))
        return out_l, out_r

    def forward_stacked(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to a (B, C, 2, H, W) stereo tensor, depth 0 = left, 1 = right."""
        out_l, out_r = self.forward(x[:, :, 0], x[:, :, 1])
        return torch.stack([out_l, out_r], dim=2)


class MaskedConv3d(nn.Conv3d):
    """3-D conv whose spatial taps are masked ("A" mask) for raster-order autoregression.

    The mask is a buffer so that release checkpoints (which carry it) load unchanged.
    The weight is multiplied by the mask on every call rather than in place.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(in_ch, out_ch, kernel_size=(3, 5, 5), stride=1, padding=(1, 2, 2))
        mask = torch.ones_like(self.weight)
        mask[:, :, :, 2, 2:] = 0
        mask[:, :, :, 3:, :] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)

    def forward_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """The conv at single positions: patches (P, in * 3 * 5 * 5) -> (P, out), for a decoder that
        evaluates the context only where the next symbols are."""
        return patches @ (self.weight * self.mask).reshape(self.out_channels, -1).T + self.bias


class HalfTanh(nn.Module):
    """0.5 tanh, the squashing of the latent residual prediction (a module so that the exact
    entropy path can put its integer version in its place)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.tanh(x)

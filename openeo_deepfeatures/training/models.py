"""The two encoder families (torch, ``train`` extra): dense and DeepFeatures-compatible patch.

Both take the contract's inputs ``x`` (normalised, NaN -> 0), ``valid`` (1 where a pixel-date has
data), ``day`` (days since the first date; only differences are used by the dense model) and
``doy`` (day of year), and have a decoder for the reconstruction loss.

- :class:`DenseEncoder`: fully convolutional in space and time.
  ``(N, T, C, H, W) -> (N, T, k, H, W)`` for any T, H, W. A pointwise stem sees the values and
  the validity mask; the time encoding (sin/cos of the day of year, log of the gaps to the
  previous and next acquisition) is added per date; a *masked temporal mean* (sum of valid
  features / number of valid dates in a window) fills cloudy pixel-dates from their neighbours
  in time; residual blocks of dilated 3x3 spatial and 3x1 temporal convolutions widen the
  receptive field. No layer pools over the tile (normalisation is over channels only), so
  features do not depend on where a tile starts: tiled inference with a halo of
  ``receptive_field()`` gives the same features as one pass over the whole cube. The decoder is
  pointwise (latent -> channels at the same pixel-date).
- :class:`PatchEncoder`: the DeepFeatures TransformerAE layout, ``(N, 11, C, 15, 15) -> (N, k)``:
  per frame a multi-scale convolution and an attention pooling over valid pixels (plus the
  centre pixel), a learned embedding of the day offset from the first date (0..365) and of the
  day of year, a transformer over the dates with invalid frames masked, the latent of the
  centre date (softplus), and a decoder of the centre frame (loss weighted towards the centre).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ProcessParameterInvalid
from .config import model_defaults

__all__ = [
    "DEFAULTS",
    "DenseEncoder",
    "PatchEncoder",
    "build_model",
    "time_features",
]

_LOG_YEAR = math.log1p(365.0)

#: Hyper-parameters of each family and their defaults (the ``[model]`` table of a config, as
#: ``config.schema.json`` defines it).
DEFAULTS: dict[str, dict[str, Any]] = model_defaults()


def time_features(day: torch.Tensor, doy: torch.Tensor) -> torch.Tensor:
    """``(N, T)`` day/doy -> ``(N, T, 4)``: sin/cos of the season, log gaps to prev/next date."""
    gap = day[:, 1:] - day[:, :-1]
    zero = torch.zeros_like(day[:, :1])
    prev_gap = torch.cat([zero, gap], dim=1)
    next_gap = torch.cat([gap, zero], dim=1)
    angle = doy * (2.0 * math.pi / 365.25)
    return torch.stack(
        [
            torch.sin(angle),
            torch.cos(angle),
            torch.log1p(torch.relu(prev_gap)) / _LOG_YEAR,
            torch.log1p(torch.relu(next_gap)) / _LOG_YEAR,
        ],
        dim=-1,
    )


def _activation(name: str):
    if name == "softplus":
        return F.softplus
    if name == "none":
        return lambda z: z
    raise ValueError(name)


class ChannelNorm(nn.Module):
    """Layer norm over the channel axis (1) only: each pixel-date on its own."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        mean = h.mean(dim=1, keepdim=True)
        var = (h - mean).pow(2).mean(dim=1, keepdim=True)
        shape = (1, -1) + (1,) * (h.dim() - 2)
        return (h - mean) / torch.sqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(
            shape
        )


class DenseBlock(nn.Module):
    """Residual: channel norm, dilated 3x3 spatial conv, dilated 3-date temporal conv."""

    def __init__(self, width: int, spatial_dilation: int, temporal_dilation: int) -> None:
        super().__init__()
        s, t = spatial_dilation, temporal_dilation
        self.norm = ChannelNorm(width)
        self.spatial = nn.Conv3d(width, width, (1, 3, 3), padding=(0, s, s), dilation=(1, s, s))
        self.temporal = nn.Conv3d(width, width, (3, 1, 1), padding=(t, 0, 0), dilation=(t, 1, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.temporal(F.gelu(self.spatial(F.gelu(self.norm(h)))))


class _Reconstructing(nn.Module):
    family: ClassVar[str]

    def __init__(self, n_channels: int, hyper: dict[str, Any]) -> None:
        super().__init__()
        self.n_channels = n_channels
        self.hyper = dict(hyper)
        self.latent = int(hyper["latent"])
        self._activation = _activation(hyper["latent_activation"])

    def forward(self, x, valid, day, doy) -> torch.Tensor:  # the exported graph
        return self.encode(x, valid, day, doy)

    def reconstruct(self, x, valid, day, doy) -> torch.Tensor:
        return self.decode(self.encode(x, valid, day, doy))


class DenseEncoder(_Reconstructing):
    family = "dense"

    def __init__(
        self,
        n_channels: int,
        *,
        latent: int = 6,
        width: int = 32,
        spatial_dilations: Sequence[int] = (1, 2, 3, 2),
        temporal_dilations: Sequence[int] = (1, 1, 1, 1),
        fill_window: int = 5,
        decoder_width: int = 32,
        latent_activation: str = "none",
    ) -> None:
        super().__init__(
            n_channels,
            {
                "latent": latent,
                "width": width,
                "spatial_dilations": list(spatial_dilations),
                "temporal_dilations": list(temporal_dilations),
                "fill_window": fill_window,
                "decoder_width": decoder_width,
                "latent_activation": latent_activation,
            },
        )
        if len(spatial_dilations) != len(temporal_dilations):
            raise ValueError("spatial_dilations and temporal_dilations need the same length")
        self.fill_radius = (fill_window - 1) // 2
        self.stem = nn.Conv3d(n_channels + 1, width, 1)
        self.time = nn.Linear(4, width)
        self.mix = nn.Conv3d(2 * width + 1, width, 1)
        self.blocks = nn.ModuleList(
            DenseBlock(width, s, t)
            for s, t in zip(spatial_dilations, temporal_dilations, strict=True)
        )
        self.head_norm = ChannelNorm(width)
        self.head = nn.Conv3d(width, latent, 1)
        self.decoder = nn.Sequential(
            nn.Conv3d(latent, decoder_width, 1),
            nn.GELU(),
            nn.Conv3d(decoder_width, decoder_width, 1),
            nn.GELU(),
            nn.Conv3d(decoder_width, n_channels, 1),
        )

    def receptive_field(self) -> dict[str, int]:
        """Radii of the receptive field: ``spatial`` px, ``temporal`` acquisitions.

        ``temporal`` includes the one extra date through which a date's *gap* features reach
        (the gap to the previous and next acquisition); ``temporal_values`` is the reach of
        ``x``/``valid`` alone.
        """
        s = sum(self.hyper["spatial_dilations"])
        t = self.fill_radius + sum(self.hyper["temporal_dilations"])
        return {"spatial": s, "temporal_values": t, "temporal": t + 1}

    def encode(self, x, valid, day, doy) -> torch.Tensor:
        v = valid.permute(0, 2, 1, 3, 4)  # N, 1, T, H, W
        h = self.stem(torch.cat([x.permute(0, 2, 1, 3, 4), v], dim=1))
        h = h + self.time(time_features(day, doy)).permute(0, 2, 1)[..., None, None]
        h = F.gelu(h) * v
        r = self.fill_radius  # masked temporal mean over 2r + 1 dates (zero-padded ends)
        window, pad = (2 * r + 1, 1, 1), (0, 0, 0, 0, r, r)
        num = F.avg_pool3d(F.pad(h, pad), window, stride=1)
        den = F.avg_pool3d(F.pad(v, pad), window, stride=1)
        h = self.mix(torch.cat([h, num / (den + 1e-4), v], dim=1))
        for block in self.blocks:
            h = block(h)
        z = self._activation(self.head(self.head_norm(h)))
        return z.permute(0, 2, 1, 3, 4)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z.permute(0, 2, 1, 3, 4)).permute(0, 2, 1, 3, 4)

    def targets(self, x: torch.Tensor, mask: torch.Tensor):
        """What the decoder reconstructs: every pixel-date; weight 1."""
        return x, mask, None


class AttentionLayer(nn.Module):
    """Pre-norm transformer layer over dates; ``bias`` (N, T) is added to attention logits."""

    def __init__(self, width: int, heads: int, ff: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, ff), nn.GELU(), nn.Linear(ff, width))

    def forward(self, tokens: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, t, d = tokens.shape
        qkv = self.qkv(self.norm1(tokens)).reshape(n, t, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads) + bias[:, None, None, :]
        y = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, t, d)
        tokens = tokens + self.proj(y)
        return tokens + self.ff(self.norm2(tokens))


class PatchEncoder(_Reconstructing):
    family = "patch"
    max_day = 365

    def __init__(
        self,
        n_channels: int,
        *,
        latent: int = 6,
        width: int = 32,
        heads: int = 4,
        layers: int = 2,
        patch_size: Sequence[int] = (11, 15, 15),
        latent_activation: str = "softplus",
    ) -> None:
        super().__init__(
            n_channels,
            {
                "latent": latent,
                "width": width,
                "heads": heads,
                "layers": layers,
                "patch_size": list(patch_size),
                "latent_activation": latent_activation,
            },
        )
        if width % heads:
            raise ValueError("width must be a multiple of heads")
        t, h, w = patch_size
        if h != w or h % 2 == 0 or t % 2 == 0:
            raise ValueError("patch_size must be (odd T, odd H, H)")
        self.patch_size = (t, h, w)
        branch = max(width // 2, 4)
        self.branches = nn.ModuleList(
            nn.Conv2d(n_channels + 1, branch, k, padding=k // 2) for k in (1, 3, 5)
        )
        self.reduce = nn.Conv2d(3 * branch, width, 3, padding=1)
        self.score = nn.Conv2d(width, 1, 1)
        self.frame = nn.Linear(2 * width, width)
        self.day_embedding = nn.Embedding(self.max_day + 1, width)
        self.season = nn.Linear(2, width)
        self.layers = nn.ModuleList(AttentionLayer(width, heads, 2 * width) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, latent)
        self.side = (h + 2) // 3  # decoder: side x side grid upsampled x3, cropped to h
        self.decoder_in = nn.Linear(latent, width * self.side * self.side)
        self.decoder = nn.Sequential(
            nn.GELU(),
            nn.Upsample(scale_factor=3, mode="nearest"),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, n_channels, 3, padding=1),
        )
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        r2 = (yy - h // 2) ** 2 + (xx - w // 2) ** 2
        self.register_buffer(
            "centre_weight", torch.exp(-r2 / (2.0 * (h / 4) ** 2)).float(), persistent=False
        )

    def receptive_field(self) -> dict[str, int]:
        t, h, _ = self.patch_size
        return {"spatial": h // 2, "temporal_values": t // 2, "temporal": t // 2}

    def encode(self, x, valid, day, doy) -> torch.Tensor:
        n, t, c, h, w = x.shape
        frames = torch.cat([x, valid], dim=2).reshape(n * t, c + 1, h, w)
        f = F.gelu(torch.cat([branch(frames) for branch in self.branches], dim=1))
        f = F.gelu(self.reduce(f))  # (n t, width, h, w)
        v = valid.reshape(n * t, h * w)
        score = self.score(f).reshape(n * t, h * w) + (v - 1.0) * 1e4
        pooled = (f.reshape(n * t, -1, h * w) * score.softmax(dim=-1)[:, None, :]).sum(dim=-1)
        centre = f[:, :, h // 2, w // 2]
        tokens = self.frame(torch.cat([pooled, centre], dim=1)).reshape(n, t, -1)
        offset = torch.clamp(torch.round(day - day[:, :1]), 0, self.max_day).long()
        angle = doy * (2.0 * math.pi / 365.25)
        season = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1)
        tokens = tokens + self.day_embedding(offset) + self.season(season)
        frame_valid = v.amax(dim=1).reshape(n, t)
        bias = (frame_valid - 1.0) * 1e4
        for layer in self.layers:
            tokens = layer(tokens, bias)
        return self._activation(self.head(self.norm(tokens[:, t // 2])))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> the centre date's frame ``(N, C, H, W)``."""
        _, h, w = self.patch_size
        g = self.decoder_in(z).reshape(z.shape[0], -1, self.side, self.side)
        return self.decoder(g)[:, :, :h, :w]

    def targets(self, x: torch.Tensor, mask: torch.Tensor):
        """The centre date's frame, weighted towards the centre pixel (as DeepFeatures)."""
        t = x.shape[1] // 2
        return x[:, t], mask[:, t], self.centre_weight


_FAMILIES = {"dense": DenseEncoder, "patch": PatchEncoder}


def build_model(family: str, n_channels: int, hyper: dict[str, Any]) -> _Reconstructing:
    """The model of ``family`` with hyper-parameters ``hyper`` (missing keys: defaults)."""
    if family not in _FAMILIES:
        raise ProcessParameterInvalid(
            process="train",
            parameter="model.family",
            reason=f"{family!r} is not one of {sorted(_FAMILIES)}.",
        )
    params = {**DEFAULTS[family], **hyper}
    return _FAMILIES[family](n_channels, **params)

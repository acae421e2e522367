"""A compact conditional UNet for 28x28 digits, in the style of improved-diffusion: it returns epsilon, which
its last layer predicts directly or, with `prediction="v"`, through v (converted inside forward()).

Condition = timestep + digit + domain: their embeddings are summed and added inside every residual
block (scale-shift norm). Index `num_digits` (10) is the "null" digit and `num_domains` (2) the null
domain, used for classifier-free guidance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from difflab.checks import check_count
from difflab.errors import DifflabError

GUIDANCE_EMBED_SCALE = 100.0
ATTENTION_HEADS = 4
PREDICTIONS = ("eps", "v")


@dataclass
class UNetConfig:
    in_channels: int = 3
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4)  # 28 -> 14 -> 7
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = ()  # levels with self-attention in the res blocks (the middle
    # block always has one at 7x7); more cost ~30% speed on CPU for little gain at 28x28
    num_digits: int = 10
    num_domains: int = 2
    groups: int = 8
    # Guidance-distilled students (Meng et al. 2023) take the CFG scale w as a fourth condition, so one
    # forward pass gives what the teacher needs two for. False for the teacher: its weights are unchanged.
    guidance_input: bool = False
    # What the last layer predicts. "eps": the noise (DDPM). "v": v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans &
    # Ho 2022, sec. 4; a = alpha_bar_t), turned into eps = sqrt(1 - a) x_t + sqrt(a) v inside forward(), so
    # every sampler, loss, distiller and adapter still gets eps: only what the network has to learn changes.
    # At high noise a v network outputs ~ -x0 (bounded), where an eps network must be exact to ~1/sqrt(a)
    # for the x0 that DDIM derives from it (160x at t = 999 of the linear schedule).
    prediction: str = "eps"

    def __post_init__(self):
        """Refuse a network that cannot be built or cannot run on 28x28 digits, when the config is built
        (from flags or from a checkpoint's metadata)."""
        for name in ("in_channels", "base_channels", "num_res_blocks", "num_digits", "num_domains", "groups"):
            check_count(name, getattr(self, name))
        if self.base_channels % self.groups or self.base_channels % ATTENTION_HEADS:
            raise DifflabError(f"--base-channels must be a multiple of {ATTENTION_HEADS} (attention heads) and of "
                               f"{self.groups} (group-norm groups), got {self.base_channels}")
        if not 1 <= len(self.channel_mults) <= 3:  # 28 -> 14 -> 7; a 4th level would go 7 -> 4 -> 8
            raise DifflabError(f"--channel-mults: give 1 to 3 levels for 28x28 images, got {list(self.channel_mults)}")
        for mult in self.channel_mults:
            check_count("channel_mults", mult)
        if self.prediction not in PREDICTIONS:
            raise DifflabError(f"unknown --prediction {self.prediction!r} ({' or '.join(PREDICTIONS)})")
        for level in self.attention_levels:
            check_count("attention_levels", level, 0, len(self.channel_mults) - 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        d = dict(d)
        for k in ("channel_mults", "attention_levels"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani et al.) of t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)  # scale and shift (FiLM), improved-diffusion's default
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as identity: stabler early training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, ch: int, groups: int, heads: int = ATTENTION_HEADS):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(h.transpose(-1, -2).reshape(B, C, H, W))


class ConditionalUNet(nn.Module):
    """eps = model(x_t, t, digit, domain[, guidance]).

    x_t: (B, 3, 28, 28) float; t: (B,) long in [0, T); digit: (B,) long in [0, 10] (10 = null);
    domain: (B,) long in [0, 2] (2 = null); guidance: (B,) float CFG scale w, required exactly when
    `config.guidance_input` (a distilled student). Returns eps, shape of x_t (float32 for a v network).

    alphas_cumprod: the schedule's alpha_bar (T,), which a v network needs to return eps (kept as a
    buffer outside the state dict: the schedule is saved beside the weights); an eps network ignores it.
    """

    def __init__(self, config: UNetConfig | None = None, alphas_cumprod: torch.Tensor | None = None):
        super().__init__()
        self.config = cfg = config or UNetConfig()
        if cfg.prediction == "v":
            if alphas_cumprod is None:
                raise DifflabError("a v-prediction UNet needs its noise schedule's alphas_cumprod")
            self.register_buffer("alphas_cumprod", alphas_cumprod.detach().float().clone(), persistent=False)
        ch, g = cfg.base_channels, cfg.groups
        emb_dim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.digit_emb = nn.Embedding(cfg.num_digits + 1, emb_dim)
        self.domain_emb = nn.Embedding(cfg.num_domains + 1, emb_dim)
        if cfg.guidance_input:
            self.guidance_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            # zero last layer: a student built from a teacher's weights starts as the teacher's
            # conditional branch, whatever w it is given
            nn.init.zeros_(self.guidance_mlp[-1].weight)
            nn.init.zeros_(self.guidance_mlp[-1].bias)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        self.down = nn.ModuleList()
        skips, cur = [ch], ch
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                blocks = [ResBlock(cur, ch * mult, emb_dim, g)]
                cur = ch * mult
                if level in cfg.attention_levels:
                    blocks.append(Attention(cur, g))
                self.down.append(nn.ModuleList(blocks))
                skips.append(cur)
            if level < len(cfg.channel_mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                skips.append(cur)

        self.mid = nn.ModuleList([ResBlock(cur, cur, emb_dim, g), Attention(cur, g),
                                  ResBlock(cur, cur, emb_dim, g)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for i in range(cfg.num_res_blocks + 1):
                blocks = [ResBlock(cur + skips.pop(), ch * mult, emb_dim, g)]
                cur = ch * mult
                if level in cfg.attention_levels:
                    blocks.append(Attention(cur, g))
                if level > 0 and i == cfg.num_res_blocks:
                    blocks.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    blocks.append(nn.Conv2d(cur, cur, 3, padding=1))
                self.up.append(nn.ModuleList(blocks))
        self.out = nn.Sequential(nn.GroupNorm(g, cur), nn.SiLU(), nn.Conv2d(cur, cfg.in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @staticmethod
    def _run_blocks(blocks: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for b in blocks:
            h = b(h, emb) if isinstance(b, ResBlock) else b(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, digit: torch.Tensor, domain: torch.Tensor,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels).to(x.dtype))
        emb = emb + self.digit_emb(digit) + self.domain_emb(domain)
        if self.config.guidance_input:
            if guidance is None:
                raise ValueError("this model is guidance-distilled: pass guidance (B,) float")
            # w in ~[0, 10] scaled to the timestep range, so the sinusoids resolve steps of ~0.01
            w_emb = timestep_embedding(guidance.float() * GUIDANCE_EMBED_SCALE, self.config.base_channels)
            emb = emb + self.guidance_mlp(w_emb.to(x.dtype))
        elif guidance is not None:
            raise ValueError("this model takes no guidance input (it is not a guidance-distilled student)")
        h = self.conv_in(x)
        hs = [h]
        for blocks in self.down:
            h = self._run_blocks(blocks, h, emb)
            hs.append(h)
        h = self._run_blocks(self.mid, h, emb)
        for blocks in self.up:
            h = self._run_blocks(blocks, torch.cat([h, hs.pop()], dim=1), emb)
        out = self.out(h)
        if self.config.prediction == "eps":
            return out
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)  # float32: the conversion is not worth bf16's error
        return (1 - a).sqrt() * x.float() + a.sqrt() * out.float()  # eps from v (x_t = sqrt(a) x0 + sqrt(1-a) eps)

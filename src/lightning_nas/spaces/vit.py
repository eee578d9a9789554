"""Vision Transformer space: patch size, embedding width, depth, and per-layer heads and MLP ratio."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.nn import ChoiceExpr, ElasticLinear, Repeat, derive, max_of, resolve
from lightning_nas.nn.choices import Switchable
from lightning_nas.spaces.base import SearchSpace, register_space
from lightning_nas.spaces.ops import check_values, choice

__all__ = ["Attention", "ElasticLayerNorm", "EncoderBlock", "PatchChoice", "PatchConv", "TokenEmbedding", "Tokens",
           "VisionTransformerSpace", "default_patch_sizes"]

STANDARD_PATCH_SIZES = (8, 16, 32)
MAX_TOKENS_PER_SIDE = 8


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_ints(name: str, values: Any) -> list[int]:
    return check_values(name, values, lambda v: _is_int(v) and v >= 1, "positive ints")


def _patch_ok(patch: int, height: int, width: int) -> bool:
    return patch <= min(height, width) and height % patch == 0 and width % patch == 0


def default_patch_sizes(height: int, width: int) -> list[int]:
    """Patch sizes for a ``height`` x ``width`` image.

    The standard ``(8, 16, 32)`` that tile the image into at least 2x2 patches; when none does,
    the common divisors giving 2 to 8 patches per side (e.g. ``[2, 4]`` for 8x8, ``[4, 7, 14]``
    for 28x28); as a last resort the whole image as one patch.

    Example:
        >>> default_patch_sizes(8, 8)
        [2, 4]
    """
    side = min(height, width)
    standard = [p for p in STANDARD_PATCH_SIZES if _patch_ok(p, height, width) and side // p >= 2]
    if standard:
        return standard
    divisors = [p for p in range(2, side + 1) if _patch_ok(p, height, width)]
    fitting = [p for p in divisors if 2 <= side // p <= MAX_TOKENS_PER_SIDE]
    return fitting or [p for p in divisors[-1:]] or [1]


def _num_patches(patch: int, height: int, width: int) -> int:
    return (height // patch) * (width // patch)


def _mlp_width(embed: int, ratio: float) -> int:
    return max(1, round(embed * ratio))


def _init_trunc(*params: nn.Parameter) -> None:
    for param in params:
        if param.device.type != "meta":
            nn.init.trunc_normal_(param, std=0.02)


class PatchConv(Switchable):
    """Non-overlapping ``patch`` x ``patch`` convolution (stride ``patch``) to a (chosen) width."""

    @classmethod
    def _plain_instance(cls, in_channels: int, out_channels: Any, patch: int) -> nn.Module | None:
        if isinstance(out_channels, ChoiceExpr):
            return None
        return nn.Conv2d(in_channels, int(out_channels), patch, stride=patch)

    def __init__(self, in_channels: int, out_channels: Any, patch: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.patch = in_channels, out_channels, patch
        reference = nn.Conv2d(in_channels, int(max_of(out_channels)), patch, stride=patch)
        bias = reference.bias
        self.weight = reference.weight
        self.bias = nn.Parameter(torch.zeros_like(self.weight[:, 0, 0, 0]) if bias is None else bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cout = int(resolve(self.out_channels))
        return F.conv2d(x, self.weight[:cout], self.bias[:cout], stride=self.patch)

    def freeze_module(self) -> nn.Module:
        cout = int(resolve(self.out_channels))
        plain = nn.Conv2d(self.in_channels, cout, self.patch, stride=self.patch, device=self.weight.device)
        plain.weight = nn.Parameter(self.weight.detach()[:cout].clone())
        plain.bias = nn.Parameter(self.bias.detach()[:cout].clone())
        return plain


class PatchChoice(nn.Module):
    """One :class:`PatchConv` per candidate patch size; runs (and freezes to) the chosen one."""

    def __init__(self, in_channels: int, out_channels: Any, patch: ChoiceExpr) -> None:
        super().__init__()
        self.patch = patch
        self.convs = nn.ModuleDict({str(p): PatchConv(in_channels, out_channels, int(p))
                                    for p in patch.possible_values()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs[str(resolve(self.patch))](x)

    def freeze_module(self) -> nn.Module:
        return self.convs[str(resolve(self.patch))]


class ElasticLayerNorm(Switchable):
    """LayerNorm over the leading (chosen) number of features of the last dimension."""

    @classmethod
    def _plain_instance(cls, num_features: Any, eps: float = 1e-6) -> nn.Module | None:
        return None if isinstance(num_features, ChoiceExpr) else nn.LayerNorm(int(num_features), eps=eps)

    def __init__(self, num_features: Any, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        size = int(max_of(num_features))
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        return F.layer_norm(x, (c,), self.weight[:c], self.bias[:c], self.eps)

    def freeze_module(self) -> nn.Module:
        c = int(resolve(self.num_features))
        plain = nn.LayerNorm(c, eps=self.eps, device=self.weight.device)
        with torch.no_grad():
            plain.weight.copy_(self.weight[:c])
            plain.bias.copy_(self.bias[:c])
        return plain


class Tokens(nn.Module):
    """Patches -> tokens, a class token in front, plus learned positions (sliced to the tokens' size)."""

    def __init__(self, patch: nn.Module, embed_dim: Any, num_patches: Any) -> None:
        super().__init__()
        self.patch = patch
        self.embed_dim, self.num_patches = embed_dim, num_patches
        width = int(max_of(embed_dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, int(max_of(num_patches)) + 1, width))
        _init_trunc(self.cls_token, self.pos_embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        batch, count, width = tokens.shape
        cls = self.cls_token[:, :, :width].expand(batch, -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed[:, : count + 1, :width]


class TokenEmbedding(Tokens):
    """:class:`Tokens` with a chosen width or patch count; the table is sized for the largest."""

    def freeze_module(self) -> nn.Module:
        width, count = int(resolve(self.embed_dim)), int(resolve(self.num_patches))
        plain = Tokens(self.patch, width, count)
        with torch.no_grad():
            plain.cls_token.copy_(self.cls_token[:, :, :width])
            plain.pos_embed.copy_(self.pos_embed[:, : count + 1, :width])
        return plain


class Attention(nn.Module):
    """Multi-head self-attention with plain tensor ops; the head count may be a choice."""

    def __init__(self, embed_dim: Any, num_heads: Any, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = ElasticLinear(embed_dim, embed_dim * 3)
        self.proj = ElasticLinear(embed_dim, embed_dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, count, width = x.shape
        heads = int(resolve(self.num_heads))
        qkv = self.qkv(x).reshape(batch, count, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = torch.matmul(q, k.transpose(-2, -1)) * (width // heads) ** -0.5
        weights = self.drop(torch.softmax(scores, dim=-1))
        out = torch.matmul(weights, v).transpose(1, 2).reshape(batch, count, width)
        return self.drop(self.proj(out))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, embed_dim: Any, num_heads: Any, mlp_ratio: Any, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = derive(_mlp_width, embed_dim, mlp_ratio)
        self.norm1 = ElasticLayerNorm(embed_dim)
        self.attn = Attention(embed_dim, num_heads, dropout)
        self.norm2 = ElasticLayerNorm(embed_dim)
        self.mlp = nn.Sequential(ElasticLinear(embed_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 ElasticLinear(hidden, embed_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClassToken(nn.Module):
    """The first token of each sequence (the class token)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


@register_space("vit")
class VisionTransformerSpace(SearchSpace):
    """A ViT: patch embedding, class token, learned positions, pre-norm encoder blocks, linear head.

    Decisions: ``patch_size``, ``embed_dim``, ``depth`` and per layer ``layer{i}/heads`` and
    ``layer{i}/mlp_ratio`` (a single-value list fixes that setting). Every embedding width must be
    divisible by every head count, so every sampled architecture is valid; the constructor rejects
    lists breaking this. The position table is sized for the smallest patch and sliced.

    Args:
        input_shape: ``(channels, height, width)``.
        num_classes: number of logits.
        num_layers: encoder depths to search.
        num_heads: attention head counts (each must divide every embedding width).
        mlp_ratios: MLP hidden width relative to the embedding width, each in (0, 8].
        patch_sizes: patch sizes; each must divide height and width and be at most the image size.
            ``None``: :func:`default_patch_sizes` (``(8, 16, 32)`` where they fit, else adapted,
            e.g. ``[2, 4]`` for 8x8 inputs).
        embed_dims: token widths to search.
        dropout: dropout probability in attention, MLP and before the head.

    Example:
        >>> space = VisionTransformerSpace((1, 8, 8), 10, num_layers=[1, 2], embed_dims=[16, 32])
        >>> space.patch_sizes
        [2, 4]
    """

    name = "vit"

    def __init__(
        self,
        input_shape: tuple[int, int, int] | list[int],
        num_classes: int,
        num_layers: Sequence[int] = (4, 6, 8, 10, 12),
        num_heads: Sequence[int] = (4, 8, 16),
        mlp_ratios: Sequence[float] = (2.0, 3.0, 4.0),
        patch_sizes: Sequence[int] | None = None,
        embed_dims: Sequence[int] = (64, 128, 192),
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_shape, num_classes)
        self.num_layers = _positive_ints("num_layers", num_layers)
        self.num_heads = _positive_ints("num_heads", num_heads)
        self.embed_dims = _positive_ints("embed_dims", embed_dims)
        ratios = check_values("mlp_ratios", mlp_ratios, lambda v: isinstance(v, int | float)
                              and not isinstance(v, bool) and 0 < v <= 8, "numbers in (0, 8]")
        self.mlp_ratios = [float(r) for r in ratios]
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        bad = [(e, h) for e in self.embed_dims for h in self.num_heads if e % h]
        if bad:
            embed, heads = bad[0]
            raise ValueError(f"embed_dims {embed} is not divisible by num_heads {heads}: every embedding width "
                             f"must be divisible by every head count (invalid pairs: {bad})")
        _, height, width = self.input_shape
        self.patch_sizes = self._check_patches(default_patch_sizes(height, width) if patch_sizes is None
                                               else patch_sizes)

    def _check_patches(self, patch_sizes: Sequence[int]) -> list[int]:
        patches = _positive_ints("patch_sizes", patch_sizes)
        _, height, width = self.input_shape
        for patch in patches:
            if patch > min(height, width):
                raise ValueError(f"patch_sizes has {patch}, larger than the {height}x{width} input resolution")
            if height % patch or width % patch:
                raise ValueError(f"patch_sizes has {patch}, which does not divide the {height}x{width} "
                                 "input resolution")
        return patches

    def construct(self) -> nn.Module:
        embed = choice(self.embed_dims, "embed_dim")
        patch = choice(self.patch_sizes, "patch_size")
        channels, height, width = self.input_shape
        count = derive(_num_patches, patch, height, width)
        if isinstance(patch, ChoiceExpr):
            patch_module: nn.Module = PatchChoice(channels, embed, patch)
        else:
            patch_module = PatchConv(channels, embed, int(patch))
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        tokens = TokenEmbedding if isinstance(embed, ChoiceExpr) or isinstance(count, ChoiceExpr) else Tokens
        layers["embed"] = tokens(patch_module, embed, count)
        layers["drop"] = nn.Dropout(self.dropout)
        layers["blocks"] = Repeat(self._block(embed), choice(self.num_layers, "depth"), label="depth")
        layers["norm"] = ElasticLayerNorm(embed)
        layers["token"] = ClassToken()
        layers["head"] = ElasticLinear(embed, self.num_classes)
        return nn.Sequential(layers)

    def _block(self, embed: Any) -> _BlockFactory:
        return _BlockFactory(embed, self.num_heads, self.mlp_ratios, self.dropout)


class _BlockFactory:
    """Builds encoder block ``i`` with its own head-count and MLP-ratio decisions."""

    def __init__(self, embed: Any, heads: list[int], ratios: list[float], dropout: float) -> None:
        self.embed, self.heads, self.ratios, self.dropout = embed, heads, ratios, dropout

    def __call__(self, index: int) -> nn.Module:
        return EncoderBlock(self.embed, choice(self.heads, f"layer{index}/heads"),
                            choice(self.ratios, f"layer{index}/mlp_ratio"), self.dropout)

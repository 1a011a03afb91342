"""Small PyTorch models (random weights) whose traced programs are the real MemoryMapping instances.

A GPT-2-style decoder stack, a ResNet-style CNN, an MLP-Mixer and a U-Net, each in a "tiny" and a "small"
configuration. Only ``extract.py`` imports this module (torch is needed to trace, never to run an env).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // self.heads))
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(y)


class GPT2Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT2(nn.Module):
    """Token + position embeddings, pre-LN decoder blocks, final LayerNorm, LM head (GPT-2's layout)."""

    def __init__(self, vocab: int, seq: int, d: int, heads: int, layers: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.blocks = nn.ModuleList(GPT2Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    """ResNet-18-style: stem, four stages of basic blocks (widths w, 2w, 4w, 8w), global pool, classifier."""

    def __init__(self, width: int, blocks: int, classes: int = 100) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, cin = [], width
        for i in range(4):
            cout = width * 2**i
            for k in range(blocks):
                layers.append(BasicBlock(cin, cout, 2 if (k == 0 and i > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(x)).mean(dim=(2, 3)))


class MixerLayer(nn.Module):
    def __init__(self, tokens: int, d: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.tok1, self.tok2 = nn.Linear(tokens, 2 * tokens), nn.Linear(2 * tokens, tokens)
        self.ch1, self.ch2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln1(x).transpose(1, 2)
        x = x + self.tok2(F.gelu(self.tok1(y))).transpose(1, 2)
        return x + self.ch2(F.gelu(self.ch1(self.ln2(x))))


class Mixer(nn.Module):
    """MLP-Mixer: patch embedding, token-mixing and channel-mixing MLP layers, pooled classifier."""

    def __init__(self, image: int, patch: int, d: int, layers: int, classes: int = 100) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, d, patch, patch)
        tokens = (image // patch) ** 2
        self.layers = nn.Sequential(*(MixerLayer(tokens, d) for _ in range(layers)))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        return self.head(self.ln(self.layers(x)).mean(dim=1))


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.c2(F.relu(self.c1(x))))


class UNet(nn.Module):
    """U-Net: encoder (conv blocks + max-pool), bottleneck, decoder (transposed conv, skip concat, conv
    blocks), 1x1 output conv. The skip connections make long-lived activations."""

    def __init__(self, width: int, depth: int, classes: int = 4) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        cin = 3
        for i in range(depth):
            self.down.append(ConvBlock(cin, width * 2**i))
            cin = width * 2**i
        self.mid = ConvBlock(cin, cin * 2)
        self.ups, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        c = cin * 2
        for i in reversed(range(depth)):
            self.ups.append(nn.ConvTranspose2d(c, width * 2**i, 2, 2))
            self.up_blocks.append(ConvBlock(2 * width * 2**i, width * 2**i))
            c = width * 2**i
        self.out = nn.Conv2d(c, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for blk in self.down:
            x = blk(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.mid(x)
        for up, blk, skip in zip(self.ups, self.up_blocks, reversed(skips), strict=True):
            x = blk(torch.cat([up(x), skip], dim=1))
        return self.out(x)


@dataclass(frozen=True)
class ModelSpec:
    """A named model configuration and its example input (batch 1)."""

    name: str
    description: str
    build: Callable[[], nn.Module]
    example: Callable[[], tuple[torch.Tensor, ...]]


def _tokens(seq: int, vocab: int) -> Callable[[], tuple[torch.Tensor, ...]]:
    return lambda: (torch.randint(0, vocab, (1, seq), generator=torch.Generator().manual_seed(0)),)


def _image(size: int) -> Callable[[], tuple[torch.Tensor, ...]]:
    return lambda: (torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)),)


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec(
            "gpt2-tiny",
            "GPT-2-style decoder: 2 layers, d=128, 4 heads, seq 64, vocab 512",
            lambda: GPT2(512, 64, 128, 4, 2),
            _tokens(64, 512),
        ),
        ModelSpec(
            "gpt2-small",
            "GPT-2-style decoder: 4 layers, d=256, 8 heads, seq 128, vocab 2048",
            lambda: GPT2(2048, 128, 256, 8, 4),
            _tokens(128, 2048),
        ),
        ModelSpec(
            "resnet-tiny",
            "ResNet-style CNN: width 16, 1 basic block per stage, 32x32 input",
            lambda: ResNet(16, 1),
            _image(32),
        ),
        ModelSpec(
            "resnet-small",
            "ResNet-18-style CNN: width 32, 2 basic blocks per stage, 64x64 input",
            lambda: ResNet(32, 2),
            _image(64),
        ),
        ModelSpec(
            "mixer-tiny",
            "MLP-Mixer: 2 layers, d=64, 8x8 patches of a 32x32 input (16 tokens)",
            lambda: Mixer(32, 8, 64, 2),
            _image(32),
        ),
        ModelSpec(
            "mixer-small",
            "MLP-Mixer: 4 layers, d=128, 8x8 patches of a 64x64 input (64 tokens)",
            lambda: Mixer(64, 8, 128, 4),
            _image(64),
        ),
        ModelSpec("unet-tiny", "U-Net: width 8, depth 2, 32x32 input", lambda: UNet(8, 2), _image(32)),
        ModelSpec("unet-small", "U-Net: width 16, depth 3, 64x64 input", lambda: UNet(16, 3), _image(64)),
    )
}

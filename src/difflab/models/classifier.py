"""A small CNN digit classifier, one per domain, used to score generated digits.

Its 128-d penultimate features also serve for the Fréchet distance between generated and real images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn


@dataclass
class ClassifierConfig:
    width: int = 32
    num_classes: int = 10

    def to_dict(self) -> dict:
        return asdict(self)


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DigitClassifier(nn.Module):
    """logits = model(x); x: (B, 3, 28, 28) float in [-1, 1]; logits (B, 10). features(x): (B, 4*width)."""

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        self.config = cfg = config or ClassifierConfig()
        w = cfg.width
        self.body = nn.Sequential(
            *_block(3, w), *_block(w, w), nn.MaxPool2d(2),  # 14x14
            *_block(w, 2 * w), *_block(2 * w, 2 * w), nn.MaxPool2d(2),  # 7x7
            *_block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(4 * w, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))

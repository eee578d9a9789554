"""Hand-designed reference networks that searched models are compared against.

``BASELINES`` maps a name to a builder ``(input_shape, num_classes) -> nn.Module``:

- ``two_conv_cnn``: the classic small CNN of the Fashion-MNIST benchmark table (two 3x3 conv +
  BatchNorm + ReLU + 2x2 max-pool blocks of 32 and 64 channels, dropout, one linear layer;
  about 50K parameters at 1x28x28).
- ``mobilenet_v3_small``: torchvision's MobileNetV3-Small with its stem adapted to small inputs
  (input channels from the data, stem stride 1 below 64 px so a 28x28 image still ends on a 2x2
  feature map instead of 1x1); about 1.5M parameters.
- ``resnet_small``: a narrow ResNet of plain 3x3 convolutions (stride-2 stem, four basic blocks of
  16/32/64/128 channels, the last three downsampling); about 3.5M MACs at 1x28x28, like the
  2-conv CNN, and dense convolutions only, which CPUs run near their peak.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

__all__ = ["BASELINES", "BasicBlock", "build_baseline", "mobilenet_v3_small", "resnet_small", "two_conv_cnn"]

InputShape = Sequence[int]


def two_conv_cnn(input_shape: InputShape, num_classes: int, dropout: float = 0.25) -> nn.Module:
    """Two conv blocks (32 and 64 channels, each halving the size) and a linear classifier."""
    channels, height, width = (int(v) for v in input_shape)
    if height < 4 or width < 4:
        raise ValueError(f"two_conv_cnn needs inputs of at least 4x4 pixels, got {height}x{width}")

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.MaxPool2d(2)]

    features = (height // 4) * (width // 4) * 64
    return nn.Sequential(*block(channels, 32), *block(32, 64), nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(features, num_classes))


def mobilenet_v3_small(input_shape: InputShape, num_classes: int) -> nn.Module:
    """torchvision's MobileNetV3-Small (random init) with the stem adapted to ``input_shape``."""
    from torchvision.models import mobilenet_v3_small as torchvision_mobilenet_v3_small

    channels, height, width = (int(v) for v in input_shape)
    model = torchvision_mobilenet_v3_small(num_classes=num_classes)
    stem = model.features[0][0]
    assert isinstance(stem, nn.Conv2d)
    stride = 2 if min(height, width) >= 64 else 1
    model.features[0][0] = nn.Conv2d(channels, stem.out_channels, 3, stride=stride, padding=1, bias=False)
    return model


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv + BatchNorm, ReLU, and a 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def resnet_small(input_shape: InputShape, num_classes: int, widths: Sequence[int] = (16, 32, 64, 128),
                 pool_size: int = 1) -> nn.Module:
    """Stride-2 3x3 stem, one basic block per width (all but the first halve the size), pool, linear.

    ``pool_size`` > 1 average-pools to ``pool_size`` x ``pool_size`` and flattens, so the classifier sees
    where a feature is (Fashion-MNIST's items are centred), for ``pool_size**2`` times the classifier weights.
    """
    if pool_size < 1:
        raise ValueError(f"resnet_small: pool_size must be >= 1, got {pool_size}")
    channels = int(input_shape[0])
    layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                               nn.ReLU(inplace=True)]
    cin = widths[0]
    for index, width in enumerate(widths):
        layers.append(BasicBlock(cin, width, 1 if index == 0 else 2))
        cin = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(pool_size), nn.Flatten(),
                         nn.Linear(cin * pool_size * pool_size, num_classes))


BASELINES: dict[str, Callable[[InputShape, int], nn.Module]] = {
    "two_conv_cnn": two_conv_cnn,
    "mobilenet_v3_small": mobilenet_v3_small,
    "resnet_small": resnet_small,
}


def build_baseline(name: str, input_shape: InputShape, num_classes: int) -> nn.Module:
    """Build the baseline ``name`` for ``input_shape`` (C, H, W) and ``num_classes`` logits."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")
    return BASELINES[name](input_shape, num_classes)

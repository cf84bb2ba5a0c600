"""The built-in architectures: CIFAR ResNets (He et al. 2016, option-A shortcuts) and the
MNIST CNN. Extraction loads weights into them; layer tails replay their later stages."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ash_core.errors import ModelError

# --------------------------------------------------------------------------- CIFAR ResNets


class PadShortcut(nn.Module):
    """Option-A identity shortcut: subsample by 2 and zero-pad the new channels (He et al.)."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0.0)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (option A) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = PadShortcut(planes)
        # no weights: a named point after the residual add, before the final ReLU, where the
        # official ASH code hooks a block ("Where to ASH"; see ash_core.layers)
        self.add = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(self.add(out + self.shortcut(x)))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: 3 stages of n basic blocks, 16/32/64 channels.

    The layout (and state-dict keys) matches the public CIFAR-10 checkpoints in
    ``../shared/data/weights/resnet_cifar10``. Penultimate features are 64-d, post-ReLU,
    average-pooled: the input of ``linear``.
    """

    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6:
            raise ModelError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56), got {depth}.")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n, 1)
        self.layer2 = self._stage(16, 32, n, 2)
        self.layer3 = self._stage(32, 64, n, 2)
        self.linear = nn.Linear(64, num_classes)

    @staticmethod
    def _stage(in_planes: int, planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_planes, planes, stride)]
        blocks += [BasicBlock(planes, planes, 1) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 64-d penultimate features (what ``linear`` sees)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return F.avg_pool2d(out, out.shape[3]).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.forward_features(x))

    STAGES = ("layer1", "layer2", "layer3")

    def forward_from(self, stage: str, pre_relu: torch.Tensor) -> torch.Tensor:
        """Logits from the pre-ReLU output of ``stage``'s last block (its ``add`` point):
        the same operations as ``forward`` from there on, so the tail of a replay."""
        out = F.relu(pre_relu)
        for name in self.STAGES[self.STAGES.index(stage) + 1:]:
            out = getattr(self, name)(out)
        return self.linear(F.avg_pool2d(out, out.shape[3]).flatten(1))


# --------------------------------------------------------------------------- MNIST CNN


class MnistCNN(nn.Module):
    """The MNIST CNN of ``../shared/data/weights/mnist_cnn``: 3x(conv3x3 pad 1 + ReLU + maxpool 2)
    with 32/64/128 channels (28 -> 14 -> 7 -> 3), then Linear(1152, 256) + ReLU (the 256-d
    penultimate features) and Linear(256, 10). Keys ``conv_layers.*`` / ``fc_layers.*``.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv_layers = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc_layers = nn.Sequential(
            nn.Linear(128 * 3 * 3, 256), nn.ReLU(), nn.Linear(256, num_classes),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_layers[1](self.fc_layers[0](self.conv_layers(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_layers[2](self.forward_features(x))

"""The original project's PyTorch code, re-expressed as the reference for ``benchmarks/vs_pytorch.py``.

* Models, each ending in one logit: ``alexnet`` (BatchNorm after every conv, laid out exactly as
  ``tfdeepfake.models.alexnet`` so both sides do the same arithmetic), ``vgg13`` (torchvision's
  configuration B: 3x3 conv + ReLU stages, ``AdaptiveAvgPool2d(7)``, 4096-4096 classifier) and
  ``xception`` (the standard Xception of Chollet 2017 as ported to PyTorch by ``pretrainedmodels``).
* Training: ``SGD(momentum=0.9)``, ``BCEWithLogitsLoss``, the usual ``zero_grad / forward / loss /
  backward / step / loss.item()`` loop (:func:`train_step`).
* Preprocessing: PIL load -> ``ToTensor`` -> ``Resize(224)`` -> ImageNet ``Normalize`` in a torch
  ``Dataset`` fed to a ``DataLoader`` (:class:`ReferenceImageFolder`, :func:`reference_loader`).
  torchvision does not install beside the CPU torch wheel here, so its three transforms are written
  with PIL and torch ops, following torchvision's own code (``to_tensor``: ``permute`` + ``div(255)``;
  ``resize`` on a tensor: bilinear ``interpolate`` with ``antialias=True``; ``normalize``: ``sub_``/``div_``).

Needs ``torch`` (the ``bench`` extra); nothing here is imported by the ``tfdeepfake`` package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
REFERENCE_NAMES = ("alexnet", "vgg13", "xception")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


# ------------------------------------------------------------------------------------------- models
def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class AlexNet(nn.Module):
    """AlexNet with BatchNorm: conv 64/11/4, 192/5, 384/3, 256/3, 256/3 (3x3/2 pools after 1, 2, 5)."""

    def __init__(self, image_size: int = 224, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn_relu(3, 64, 11, 4, 4), nn.MaxPool2d(3, 2, 1),
            *_conv_bn_relu(64, 192, 5, 1, 2), nn.MaxPool2d(3, 2, 1),
            *_conv_bn_relu(192, 384, 3, 1, 1),
            *_conv_bn_relu(384, 256, 3, 1, 1),
            *_conv_bn_relu(256, 256, 3, 1, 1), nn.MaxPool2d(3, 2, 1),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, 3, image_size, image_size)).numel()
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class VGG13(nn.Module):
    """torchvision ``vgg13`` (configuration B) with a one-logit last layer."""

    CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M",
                                  512, 512, "M")

    def __init__(self, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(dropout), nn.Linear(4096, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class SeparableConv2d(nn.Module):
    """3x3 depthwise then 1x1 pointwise convolution, no biases."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.conv1(x))


class Block(nn.Module):
    """Xception block: ``reps`` x (ReLU, SeparableConv, BN) [+ 3x3/2 max-pool], plus a shortcut."""

    def __init__(self, cin: int, cout: int, reps: int, stride: int = 1, *,
                 start_with_relu: bool = True, grow_first: bool = True) -> None:
        super().__init__()
        if cout != cin or stride != 1:
            self.skip: nn.Module | None = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            self.skipbn: nn.Module | None = nn.BatchNorm2d(cout)
        else:
            self.skip = self.skipbn = None
        rep: list[nn.Module] = []
        filters = cin
        if grow_first:
            rep += [nn.ReLU(inplace=True), SeparableConv2d(cin, cout), nn.BatchNorm2d(cout)]
            filters = cout
        for _ in range(reps - 1):
            rep += [nn.ReLU(inplace=True), SeparableConv2d(filters, filters), nn.BatchNorm2d(filters)]
        if not grow_first:
            rep += [nn.ReLU(inplace=True), SeparableConv2d(cin, cout), nn.BatchNorm2d(cout)]
        if start_with_relu:
            rep[0] = nn.ReLU(inplace=False)  # the block input is also the shortcut's input
        else:
            rep = rep[1:]
        if stride != 1:
            rep.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*rep)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.rep(inp)
        skip = self.skipbn(self.skip(inp)) if self.skip is not None else inp
        return x + skip


class Xception(nn.Module):
    """Standard Xception: entry flow (2 convs, 3 blocks), 8 middle blocks, exit flow, pool, 1 logit."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        blocks = [Block(64, 128, 2, 2, start_with_relu=False), Block(128, 256, 2, 2),
                  Block(256, 728, 2, 2)]
        blocks += [Block(728, 728, 3, 1) for _ in range(8)]
        blocks.append(Block(728, 1024, 2, 2, grow_first=False))
        self.blocks = nn.Sequential(*blocks)
        self.conv3 = SeparableConv2d(1024, 1536)
        self.bn3 = nn.BatchNorm2d(1536)
        self.conv4 = SeparableConv2d(1536, 2048)
        self.bn4 = nn.BatchNorm2d(2048)
        self.fc = nn.Linear(2048, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.blocks(x)
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.relu(self.bn4(self.conv4(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def build_reference(name: str, image_size: int = 224) -> nn.Module:
    """The reference model ``name`` (one of :data:`REFERENCE_NAMES`) for ``image_size`` inputs."""
    if name == "alexnet":
        return AlexNet(image_size)
    if name == "vgg13":
        return VGG13()
    if name == "xception":
        return Xception()
    raise ValueError(f"no PyTorch reference for {name!r}; choose from {REFERENCE_NAMES}")


def trainable_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------- training
def make_optimizer(model: nn.Module, lr: float = 0.01) -> torch.optim.Optimizer:
    """The original optimizer: SGD with momentum 0.9."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module,
               inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """One step of the original loop; returns the batch loss (``loss.item()``)."""
    optimizer.zero_grad()
    outputs = model(inputs)
    loss = criterion(outputs, labels)
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Inference as the original: the model in ``eval()`` under ``torch.no_grad()``."""
    model.eval()
    return model(inputs)


# ------------------------------------------------------------------------------------ preprocessing
def to_tensor(image: Image.Image) -> torch.Tensor:
    """torchvision ``ToTensor`` for an RGB PIL image: float ``(3, h, w)`` in [0, 1]."""
    array = np.array(image, dtype=np.uint8, copy=True)
    tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    return tensor.to(dtype=torch.float32).div(255)


def resize(tensor: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision ``Resize(size)`` on a tensor: shorter side to ``size`` (bilinear, antialiased)."""
    h, w = tensor.shape[-2:]
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    if (new_h, new_w) == (h, w):
        return tensor
    out = F.interpolate(tensor[None], size=(new_h, new_w), mode="bilinear", align_corners=False,
                        antialias=True)
    return out[0]


def normalize(tensor: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """torchvision ``Normalize``: ``(x - mean) / std`` per channel."""
    m = torch.as_tensor(mean, dtype=tensor.dtype).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=tensor.dtype).view(-1, 1, 1)
    return tensor.sub_(m).div_(s)


def reference_transform(size: int = 224) -> Callable[[Image.Image], torch.Tensor]:
    """``Compose([ToTensor(), Resize(size), Normalize(ImageNet)])``."""

    def transform(image: Image.Image) -> torch.Tensor:
        return normalize(resize(to_tensor(image), size))

    return transform


def list_images(root: str | Path) -> list[tuple[str, int]]:
    """``(path, label)`` for every image under ``root/real`` (0) and ``root/fake`` (1), sorted."""
    root = Path(root)
    items: list[tuple[str, int]] = []
    for label, cls in enumerate(("real", "fake")):
        folder = root / cls
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such class folder")
        items += [(str(p), label) for p in sorted(folder.rglob("*"))
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not items:
        raise FileNotFoundError(f"{root}: no images under real/ and fake/")
    return items


class ReferenceImageFolder(torch.utils.data.Dataset):
    """The original Dataset: PIL load (RGB) then the transform; label as a float ``(1,)`` tensor."""

    def __init__(self, items: Sequence[tuple[str, int]], size: int = 224) -> None:
        self.items = list(items)
        self.transform = reference_transform(size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, label = self.items[index]
        with Image.open(path) as img:
            image = img.convert("RGB")
        return self.transform(image), torch.tensor([float(label)])


def reference_loader(items: Sequence[tuple[str, int]], *, size: int = 224, batch_size: int = 32,
                     workers: int = 2, samples: int | None = None, seed: int = 0,
                     persistent: bool = False) -> Any:
    """``DataLoader(shuffle=True, num_workers=workers)``; ``samples`` > len draws several epochs."""
    dataset = ReferenceImageFolder(items, size)
    generator = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.RandomSampler(dataset, num_samples=samples, generator=generator)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        persistent_workers=persistent and workers > 0,
    )

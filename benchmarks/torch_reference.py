"""The original project's PyTorch code, re-expressed as the reference for ``benchmarks/vs_pytorch.py``.

The original notebooks (1-4.ipynb) define their models as PyTorch classes; this module re-expresses them
layer for layer (issue #14), each ending in one logit:

* ``alexnet`` (notebook 1, :class:`AlexNet`): Conv 96 k11 s4 *no padding* -> BN -> ReLU -> MaxPool 3/2
  -> Conv 256 k5 p2 -> BN/ReLU -> MaxPool 3/2 -> Conv 384 k3 p1 -> Conv 384 k3 p1 -> Conv 256 k3 p1 (each
  conv with its bias, then BN + ReLU) -> MaxPool 3/2, so 224 px gives 54 -> 26 -> 12 -> 5 and a 6,400-wide
  flatten; Dropout 0.5 -> FC 4096 -> ReLU -> Dropout 0.5 -> FC 4096 -> ReLU -> FC 1: 46,753,857
  parameters.
* ``vgg13`` (notebook 2, :class:`VGG13`, the notebook's ``VGG13_B``): configuration B's 3x3 convs (with
  biases, ReLU, no BN) and 2x2 pools, 7x7 average pool (the identity at 224 px), FC 25088 -> 4096 -> ReLU
  -> Dropout(0) -> FC 4096 -> 4096 -> ReLU -> FC 1: 128,954,945 parameters.
* ``xception`` (notebook 3, :class:`Xception` with :class:`DepthWiseSeparable` convs, depthwise and
  pointwise each with a bias): stem 3x3 s2 *padded* 32 + 3x3 64 (bias, BN, ReLU); entry blocks 128, 256, 728
  of two separable convs (each + BN) and a 3x3/2 max-pool, shortcut a 1x1 s2 conv with a bias and no
  BN; **one** middle-flow module of three separable 728 convs, BN after the first two and none after the
  third, applied nine times with shared weights (residual each time); exit block 728 -> 1024 -> 1024
  (+ pool, conv shortcut), separable 1024 -> 1536 -> 2048 (BN + ReLU each), global average pool, one FC,
  no dropout: 10,047,617 parameters. Where the notebook's BN placement is not spelled out, the placement
  is the one whose count is exactly 10,047,617: every conv biased, BN after every separable conv except
  the middle module's last one (which ends the module before the residual add).
* ``alexnet_rnn`` (notebook 4, :class:`AlexNetRNN`): the AlexNet conv stack and 6,400-wide flatten, then
  ``nn.RNN`` 6400 -> 256, 256 -> 256, 256 -> 128, a 2-layer ``nn.RNN`` 128 -> 64 (tanh), FC 64 -> 256 ->
  ReLU -> FC 1, no dropout: 5,673,025 parameters (PyTorch keeps two bias vectors per RNN layer). The
  flattened features are a sequence of length one, so each RNN acts as a tanh layer.

Training (:func:`train_step`): ``SGD(lr=0.01, momentum=0.9)``, ``BCEWithLogitsLoss``, batch 32, the
notebooks' ``zero_grad / forward / loss / backward / step / loss.item()`` loop in float32. Inference: the
model in ``eval()`` under ``torch.no_grad()``. Preprocessing: ``Resize(224)`` -> ``ToTensor()`` ->
``Normalize(ImageNet)`` in a torch ``Dataset`` fed to a ``DataLoader`` (:class:`ReferenceImageFolder`,
:func:`reference_loader`). torchvision is not installed beside the CPU torch wheel here, so its three
transforms are written with PIL and torch, following torchvision's own code (``resize`` of a PIL image:
``Image.resize`` bilinear, shorter side to 224; ``to_tensor``: ``permute`` + ``div(255)``; ``normalize``:
``sub_``/``div_``).

Needs ``torch`` (the ``bench`` extra); nothing here is imported by the ``tfdeepfake`` package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
REFERENCE_NAMES = ("alexnet", "alexnet_rnn", "vgg13", "xception")
PARAMETERS_AT_224 = {"alexnet": 46_753_857, "alexnet_rnn": 5_673_025, "vgg13": 128_954_945,
                     "xception": 10_047_617}
"""Trainable parameters of the notebooks' models at 224 px (issue #14)."""
IMAGE_SIZE = 224
LEARNING_RATE = 0.01
MOMENTUM = 0.9
BATCH_SIZE = 32
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


# ------------------------------------------------------------------------------------------- models
def alexnet_features() -> nn.Sequential:
    """Notebook 1's conv stack: 96/11/4 (no padding), 256/5, 384/3, 384/3, 256/3; BN + ReLU after each."""

    def conv(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *conv(3, 96, 11, 4), nn.MaxPool2d(3, 2),
        *conv(96, 256, 5, padding=2), nn.MaxPool2d(3, 2),
        *conv(256, 384, 3, padding=1), *conv(384, 384, 3, padding=1), *conv(384, 256, 3, padding=1),
        nn.MaxPool2d(3, 2),
    )


def _flat_width(image_size: int) -> int:
    """Width of the AlexNet stack's flattened output for one ``image_size`` image (shapes only)."""
    with torch.device("meta"):
        return int(alexnet_features()(torch.zeros(1, 3, image_size, image_size)).numel())


class AlexNet(nn.Module):
    """Notebook 1's AlexNet (6,400-wide flatten at 224 px), one logit."""

    def __init__(self, image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        self.features = alexnet_features()
        flat = _flat_width(image_size)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(flat, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class AlexNetRNN(nn.Module):
    """Notebook 4's CNN-RNN hybrid: the AlexNet conv stack, four ``nn.RNN`` (tanh) over a length-1
    sequence of the flattened features, FC 64 -> 256 -> ReLU -> FC 1."""

    def __init__(self, image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        self.features = alexnet_features()
        flat = _flat_width(image_size)
        self.rnn1 = nn.RNN(flat, 256, batch_first=True)
        self.rnn2 = nn.RNN(256, 256, batch_first=True)
        self.rnn3 = nn.RNN(256, 128, batch_first=True)
        self.rnn4 = nn.RNN(128, 64, num_layers=2, batch_first=True)
        self.fc1 = nn.Linear(64, 256)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(256, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1).unsqueeze(1)  # (batch, 1, 6400): a sequence of one
        x, _ = self.rnn1(x)
        x, _ = self.rnn2(x)
        x, _ = self.rnn3(x)
        x, _ = self.rnn4(x)
        return self.fc2(self.relu(self.fc1(x[:, -1, :])))


class VGG13(nn.Module):
    """Notebook 2's ``VGG13_B``: configuration B convs, FC 25088-4096-4096-1 with Dropout(0)."""

    CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M",
                                  512, 512, "M")

    def __init__(self) -> None:
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
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(0.0),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class DepthWiseSeparable(nn.Module):
    """3x3 depthwise conv then 1x1 pointwise conv, each with its bias (``nn.Conv2d``'s default)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class DownBlock(nn.Module):
    """Entry/exit block: [ReLU] sep(cin, mid) BN ReLU sep(mid, cout) BN, 3x3/2 max-pool; + 1x1 s2 conv
    shortcut (bias, no BN)."""

    def __init__(self, cin: int, mid: int, cout: int, *, start_with_relu: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReLU()] if start_with_relu else []
        layers += [DepthWiseSeparable(cin, mid), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                   DepthWiseSeparable(mid, cout), nn.BatchNorm2d(cout), nn.MaxPool2d(3, 2, 1)]
        self.residual = nn.Sequential(*layers)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class MiddleFlow(nn.Module):
    """One middle-flow module (3 x ReLU + separable 728 conv; BN after the first two), identity shortcut."""

    def __init__(self, channels: int = 728) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.ReLU(), DepthWiseSeparable(channels, channels), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True), DepthWiseSeparable(channels, channels), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True), DepthWiseSeparable(channels, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + x


class Xception(nn.Module):
    """Notebook 3's Xception: one middle-flow module applied ``middle_repeats`` (9) times, shared weights."""

    def __init__(self, middle_repeats: int = 9) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        )
        self.entry = nn.Sequential(DownBlock(64, 128, 128, start_with_relu=False),
                                   DownBlock(128, 256, 256), DownBlock(256, 728, 728))
        self.middle = MiddleFlow(728)
        self.middle_repeats = middle_repeats
        self.exit_block = DownBlock(728, 1024, 1024)
        self.exit = nn.Sequential(
            DepthWiseSeparable(1024, 1536), nn.BatchNorm2d(1536), nn.ReLU(inplace=True),
            DepthWiseSeparable(1536, 2048), nn.BatchNorm2d(2048), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(2048, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(self.stem(x))
        for _ in range(self.middle_repeats):
            x = self.middle(x)
        return self.fc(self.exit(self.exit_block(x)))


def build_reference(name: str, image_size: int = IMAGE_SIZE) -> nn.Module:
    """The notebooks' model ``name`` (one of :data:`REFERENCE_NAMES`) for ``image_size`` inputs."""
    if name == "alexnet":
        return AlexNet(image_size)
    if name == "alexnet_rnn":
        return AlexNetRNN(image_size)
    if name == "vgg13":
        return VGG13()
    if name == "xception":
        return Xception()
    raise ValueError(f"no PyTorch reference for {name!r}; choose from {REFERENCE_NAMES}")


def trainable_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (shared modules counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------- training
def make_optimizer(model: nn.Module, lr: float = LEARNING_RATE) -> torch.optim.Optimizer:
    """The notebooks' optimizer: SGD, lr 0.01, momentum 0.9."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module,
               inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """One step of the notebooks' loop; returns the batch loss (``loss.item()``)."""
    optimizer.zero_grad()
    outputs = model(inputs)
    loss = criterion(outputs, labels)
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Inference as the notebooks: the model in ``eval()`` under ``torch.no_grad()``."""
    model.eval()
    return model(inputs)


# ------------------------------------------------------------------------------------ preprocessing
def resize(image: Image.Image, size: int) -> Image.Image:
    """torchvision ``Resize(size)`` on a PIL image: shorter side to ``size``, bilinear."""
    w, h = image.size
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    if (new_w, new_h) == (w, h):
        return image
    return image.resize((new_w, new_h), Image.BILINEAR)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """torchvision ``ToTensor`` for an RGB PIL image: float ``(3, h, w)`` in [0, 1]."""
    array = np.array(image, dtype=np.uint8, copy=True)
    tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    return tensor.to(dtype=torch.float32).div(255)


def normalize(tensor: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """torchvision ``Normalize``: ``(x - mean) / std`` per channel."""
    m = torch.as_tensor(mean, dtype=tensor.dtype).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=tensor.dtype).view(-1, 1, 1)
    return tensor.sub_(m).div_(s)


def reference_transform(size: int = IMAGE_SIZE) -> Callable[[Image.Image], torch.Tensor]:
    """``Compose([Resize(size), ToTensor(), Normalize(ImageNet)])``."""

    def transform(image: Image.Image) -> torch.Tensor:
        return normalize(to_tensor(resize(image, size)))

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
    """The notebooks' Dataset: PIL load (RGB) then the transform; label as a float ``(1,)`` tensor."""

    def __init__(self, items: Sequence[tuple[str, int]], size: int = IMAGE_SIZE) -> None:
        self.items = list(items)
        self.transform = reference_transform(size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, label = self.items[index]
        with Image.open(path) as img:
            image = img.convert("RGB")
        return self.transform(image), torch.tensor([float(label)])


def reference_loader(items: Sequence[tuple[str, int]], *, size: int = IMAGE_SIZE,
                     batch_size: int = BATCH_SIZE, workers: int = 2, samples: int | None = None,
                     seed: int = 0, persistent: bool = False) -> Any:
    """``DataLoader(shuffle=True, num_workers=workers)``; ``samples`` > len draws several epochs."""
    dataset = ReferenceImageFolder(items, size)
    generator = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.RandomSampler(dataset, num_samples=samples, generator=generator)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        persistent_workers=persistent and workers > 0,
    )

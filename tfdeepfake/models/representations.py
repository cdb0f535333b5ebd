"""Input representations: what the first convolution sees, computed inside the model.

Every model takes raw RGB (0-255, any size); :func:`tfdeepfake.models.common.preprocess` resizes and
normalises it, then (for a representation other than ``"rgb"``) one layer of this module stacks a fixed,
parameter-free transform *of the same whole image* onto the normalised RGB channels (or, for
``"wavelet"``, re-arranges them losslessly):

* ``"rgb"``: the normalised image, 3 channels (no layer).
* ``"rgb+highpass"``: + the 4-neighbour Laplacian residual of each channel (a second-order SRM-style
  high-pass filter, reflected borders), times ``gain`` (default 1): 6 channels.
* ``"rgb+wavelet"``: + a one-level orthonormal 2-D Haar decomposition of each channel (LL, LH, HL, HH;
  LL = (a + b + c + d) / 2, so a constant image gives LL = 2x its value and zero detail bands), each
  sub-band brought back to full size by nearest-neighbour upsampling (every coefficient covers the
  2 x 2 block it was computed from; an odd side is first padded by repeating its last row/column),
  the detail bands times ``gain`` (default 4): 3 + 4 x 3 = 15 channels, ordered RGB, LL(RGB), LH, HL, HH.
* ``"wavelet"``: the same four Haar sub-bands *instead of* RGB, at half the side (no upsampling):
  4 x 3 = 12 channels at ``ceil(h/2) x ceil(w/2)``. The transform is orthonormal, so nothing of the image
  is lost (LL is the whole face at half resolution, the detail bands hold the rest): a model given
  ``image_size`` 128 sees all of a 128 px face at the cost of a 64 px one (its layers run on 64 x 64).

The layers run after normalisation (ImageNet mean/std), so RGB keeps its usual scale and the transforms
are of the normalised values (the Laplacian and the detail bands do not see the mean, which they cancel;
they are the 0-255 residuals divided by the channel std). ``gain`` brings the residuals towards the
scale of the RGB channels; measured on 50 rvf10k training faces at 96 px (224 px): normalised RGB std
1.20 (1.20), Laplacian 0.77 (0.39), Haar LL 2.36 (2.39), Haar detail bands 0.26 (0.15) before the gain.

The representation is stored in the layer's config (``representation``), so a saved model says what it
expects (:func:`model_representation`); the layers use ``keras.ops`` only (any Keras backend) and run
in float32 under mixed precision.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

REPRESENTATIONS: tuple[str, ...] = ("rgb", "rgb+highpass", "rgb+wavelet", "wavelet")
"""Valid ``train --input`` values."""


def check_representation(name: Any) -> str:
    """``name`` if it is one of :data:`REPRESENTATIONS`; ``ValueError`` listing them otherwise."""
    if name not in REPRESENTATIONS:
        raise ValueError(f"unknown input representation {name!r}; valid: {', '.join(REPRESENTATIONS)}")
    return name


def _static_hw(x: Any, layer: str) -> tuple[int, int]:
    h, w = tuple(x.shape)[1:3]
    if h is None or w is None:
        raise ValueError(f"{layer} needs a static height and width (place it after the Resize layer); "
                         f"got input shape {tuple(x.shape)}")
    return int(h), int(w)


def _haar_bands(x: Any, gain: float) -> Any:
    """One-level orthonormal Haar sub-bands of ``x`` (b, h, w, c) at half the side: (b, ceil(h/2),
    ceil(w/2), 4c), ordered LL, LH, HL, HH (channels within), detail bands times ``gain``; an odd side
    is first padded by repeating its last row/column."""
    h, w = tuple(x.shape)[1:3]
    if h % 2:
        x = ops.concatenate([x, x[:, -1:]], axis=1)
    if w % 2:
        x = ops.concatenate([x, x[:, :, -1:]], axis=2)
    a, b = x[:, 0::2, 0::2], x[:, 0::2, 1::2]
    c, d = x[:, 1::2, 0::2], x[:, 1::2, 1::2]
    return ops.concatenate([(a + b + c + d) * 0.5,
                            (a + b - c - d) * (0.5 * gain),
                            (a - b + c - d) * (0.5 * gain),
                            (a - b - c + d) * (0.5 * gain)], axis=-1)


class _Representation(keras.layers.Layer):
    """Base: concatenates ``extra(x)`` onto ``x`` along channels; ``representation`` in the config."""

    REPRESENTATION = "rgb"
    EXTRA_PER_CHANNEL = 0
    KEEPS_INPUT = True  # the output starts with the input's channels
    DEFAULT_GAIN = 1.0

    def __init__(self, gain: float | None = None, representation: str | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if representation not in (None, self.REPRESENTATION):
            raise ValueError(f"{type(self).__name__} computes {self.REPRESENTATION!r}, "
                             f"not {representation!r}")
        self.gain = float(self.DEFAULT_GAIN if gain is None else gain)
        self.representation = self.REPRESENTATION

    def extra(self, x: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        return ops.concatenate([x, self.extra(x)], axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        c = input_shape[-1]
        return (*input_shape[:-1], None if c is None else c * (1 + self.EXTRA_PER_CHANNEL))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gain": self.gain, "representation": self.representation}


@keras.saving.register_keras_serializable(package="tfdeepfake")
class HighPassResidual(_Representation):
    """``(b, h, w, c) -> (b, h, w, 2c)``: the input, then ``gain`` x its 4-neighbour Laplacian
    ``x[i-1,j] + x[i+1,j] + x[i,j-1] + x[i,j+1] - 4 x[i,j]`` per channel (reflected borders)."""

    REPRESENTATION = "rgb+highpass"
    EXTRA_PER_CHANNEL = 1

    def extra(self, x: Any) -> Any:
        h, w = _static_hw(x, type(self).__name__)
        p = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        lap = (p[:, :h, 1:w + 1] + p[:, 2:h + 2, 1:w + 1] + p[:, 1:h + 1, :w] + p[:, 1:h + 1, 2:w + 2]
               - 4.0 * x)
        return lap * self.gain


@keras.saving.register_keras_serializable(package="tfdeepfake")
class HaarWavelet(_Representation):
    """``(b, h, w, c) -> (b, h, w, 5c)``: the input, then its one-level orthonormal Haar sub-bands
    LL, LH, HL, HH (each ``c`` channels, nearest-upsampled to ``h x w``; detail bands x ``gain``).

    With ``a, b / c, d`` the 2 x 2 block (rows, then columns): LL = (a+b+c+d)/2, LH = (a+b-c-d)/2
    (vertical change: horizontal edges), HL = (a-b+c-d)/2 (horizontal change), HH = (a-b-c+d)/2.
    """

    REPRESENTATION = "rgb+wavelet"
    EXTRA_PER_CHANNEL = 4
    DEFAULT_GAIN = 4.0

    def extra(self, x: Any) -> Any:
        h, w = _static_hw(x, type(self).__name__)
        bands = _haar_bands(x, self.gain)
        return ops.repeat(ops.repeat(bands, 2, axis=1), 2, axis=2)[:, :h, :w]


@keras.saving.register_keras_serializable(package="tfdeepfake")
class HaarSubbands(_Representation):
    """``(b, h, w, c) -> (b, ceil(h/2), ceil(w/2), 4c)``: the Haar sub-bands LL, LH, HL, HH of
    :class:`HaarWavelet` (same formulas and ``gain``) at half the side, without the input itself: an
    orthonormal (lossless) re-arrangement of the image that halves the side every later layer runs on."""

    REPRESENTATION = "wavelet"
    EXTRA_PER_CHANNEL = 4
    DEFAULT_GAIN = 4.0
    KEEPS_INPUT = False

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        _static_hw(x, type(self).__name__)
        return _haar_bands(x, self.gain)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        b, h, w, c = input_shape
        half = [None if s is None else (s + 1) // 2 for s in (h, w)]
        return (b, *half, None if c is None else c * self.EXTRA_PER_CHANNEL)


_LAYERS: dict[str, type[_Representation]] = {
    cls.REPRESENTATION: cls for cls in (HighPassResidual, HaarWavelet, HaarSubbands)
}


def representation_layer(name: str, **kwargs: Any) -> keras.layers.Layer | None:
    """The layer computing representation ``name`` (named ``"representation"``); None for ``"rgb"``."""
    check_representation(name)
    if name == "rgb":
        return None
    kwargs.setdefault("name", "representation")
    return _LAYERS[name](**kwargs)


def input_channels(name: str, channels: int = 3) -> int:
    """Channels the first layer after preprocessing sees for representation ``name``."""
    check_representation(name)
    if name == "rgb":
        return channels
    layer = _LAYERS[name]
    return channels * (layer.EXTRA_PER_CHANNEL + layer.KEEPS_INPUT)


def model_representation(model: Any) -> str:
    """The input representation a (single, non-ensemble) model computes: its representation layer's
    ``representation`` config value, ``"rgb"`` when it has none."""
    found = {layer.representation for layer in model.layers if isinstance(layer, _Representation)}
    if len(found) > 1:
        raise ValueError(f"model {model.name!r} has several input representations: {sorted(found)}")
    return found.pop() if found else "rgb"


__all__ = [
    "REPRESENTATIONS",
    "HaarSubbands",
    "HaarWavelet",
    "HighPassResidual",
    "check_representation",
    "input_channels",
    "model_representation",
    "representation_layer",
]

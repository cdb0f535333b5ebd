"""Feasibility trial for issue #6 (not package code): native-resolution crops, with or without an NPR input.

Trains a small residual CNN for a fixed wall-clock budget on random even-aligned crops of rvf10k/train
images at their native 256 px (no resizing, which would blur generator traces), optionally feeding it
the neighbouring-pixel-relationship residual (NPR, Tan et al., CVPR 2024: ``x - up(down(x))`` with
nearest-neighbour 2x down/up-sampling), and scores whole 256 px images (the network is fully
convolutional) on a 300-image validation hold-out every 3 epochs, then on rvf10k/test and hardfake.

    python docs/experiment/trials/native_crops_npr.py npr|plain|resized [MINUTES] [CROP] [DATA_ROOT]

``resized`` is the usual route for comparison (whole image resized to CROP px).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops
from sklearn.metrics import roc_auc_score

VARIANT = sys.argv[1] if len(sys.argv) > 1 else "npr"
MINUTES = float(sys.argv[2]) if len(sys.argv) > 2 else 6.0
CROP = int(sys.argv[3]) if len(sys.argv) > 3 else 64
ROOT = Path(sys.argv[4] if len(sys.argv) > 4 else "../shared/data")
SIZE = 256


def load(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for label, name in ((0, "real"), (1, "fake")):
        for path in sorted((folder / name).iterdir()):
            image = tf.io.decode_image(tf.io.read_file(str(path)), channels=3,
                                       expand_animations=False).numpy()
            top = (image.shape[0] - SIZE) // 4 * 2  # even offsets keep the 2x2 pixel grid
            left = (image.shape[1] - SIZE) // 4 * 2
            images.append(image[top:top + SIZE, left:left + SIZE])
            labels.append(label)
    return np.stack(images), np.array(labels, np.float32)


class NPR(layers.Layer):
    """``x - nearest_up2(x[:, ::2, ::2])``: the residual of each pixel against its 2x2 cell's corner."""

    def call(self, x):
        h, w = ops.shape(x)[1], ops.shape(x)[2]
        corner = x[:, ::2, ::2, :]
        return x - ops.repeat(ops.repeat(corner, 2, axis=1), 2, axis=2)[:, :h, :w, :]


def block(x, filters: int, strides: int):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(x)
        shortcut = layers.BatchNormalization()(shortcut)
    y = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    y = layers.ReLU()(layers.BatchNormalization()(y))
    y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same", use_bias=False)(y))
    return layers.ReLU()(layers.Add()([shortcut, y]))


def build() -> keras.Model:
    inputs = keras.Input((None, None, 3))
    x = layers.Rescaling(1 / 127.5, -1, dtype="float32")(inputs)
    if VARIANT == "npr":
        x = layers.Rescaling(4.0, dtype="float32")(NPR(dtype="float32")(x))
    x = layers.Conv2D(32, 3, padding="same", use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    for filters, strides in ((64, 2), (64, 1), (128, 2), (128, 1), (256, 2)):
        x = block(x, filters, strides)
    x = layers.Dropout(0.3)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, layers.Dense(1, dtype="float32")(x))


def main() -> None:
    keras.utils.set_random_seed(1)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    x, y = load(ROOT / "rvf10k" / "train")
    perm = np.random.default_rng(0).permutation(len(x))
    val, train = perm[:300], perm[300:]

    def sample(image, label):
        if VARIANT == "resized":
            image = tf.image.resize(image, (CROP, CROP))
        else:
            offset = tf.random.uniform((2,), 0, (SIZE - CROP) // 2 + 1, dtype=tf.int32) * 2
            image = tf.cast(image[offset[0]:offset[0] + CROP, offset[1]:offset[1] + CROP], tf.float32)
        return tf.image.random_flip_left_right(image), label

    ds = (tf.data.Dataset.from_tensor_slices((x[train], y[train])).shuffle(3000)
          .map(sample, num_parallel_calls=2).batch(32).prefetch(2))
    model = build()
    model.compile(keras.optimizers.AdamW(1e-3, weight_decay=1e-4),
                  keras.losses.BinaryCrossentropy(from_logits=True))

    def score(images: np.ndarray, labels: np.ndarray) -> str:
        if VARIANT == "resized":
            images = tf.image.resize(images, (CROP, CROP)).numpy()
        logits = model.predict(images, batch_size=16, verbose=0).ravel()
        return f"acc {((logits > 0) == labels).mean():.3f} AUC {roc_auc_score(labels, logits):.3f}"

    start, epoch = time.time(), 0
    while time.time() - start < MINUTES * 60:
        loss = model.fit(ds, epochs=1, verbose=0).history["loss"][0]
        epoch += 1
        if epoch % 3 == 0:
            print(f"epoch {epoch} ({time.time() - start:.0f} s): train loss {loss:.4f}, "
                  f"validation {score(x[val], y[val])}", flush=True)
    print(f"{VARIANT} crop {CROP}, {epoch} epochs: validation {score(x[val], y[val])}; "
          f"rvf10k test {score(*load(ROOT / 'rvf10k' / 'test'))}; "
          f"hardfake {score(*load(ROOT / 'hardfake'))}", flush=True)


if __name__ == "__main__":
    main()

"""Feasibility trial for issue #6 (not package code): are rvf10k's fakes separable by frequency features?

Azimuthally averaged log power spectrum of the grey image (Durall et al., "Unmasking DeepFakes with
simple features", 2020) plus two high-pass residual statistics, then logistic regression and gradient
boosting. Trained on rvf10k/train, scored on rvf10k/test and hardfake (images centre-cropped to 256 px).

    python docs/experiment/trials/spectrum_features.py [DATA_ROOT]   # default ../shared/data
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SIZE = 256


def features(path: Path) -> np.ndarray:
    image = np.asarray(Image.open(path).convert("L"), np.float32)
    top, left = (image.shape[0] - SIZE) // 2, (image.shape[1] - SIZE) // 2
    image = image[top:top + SIZE, left:left + SIZE]
    power = np.log(np.abs(np.fft.fftshift(np.fft.fft2(image))) ** 2 + 1e-8)
    y, x = np.indices(power.shape)
    radius = np.hypot(x - SIZE / 2, y - SIZE / 2).astype(int).ravel()
    profile = np.bincount(radius, power.ravel()) / np.bincount(radius)
    residual = image[1:, 1:] - image[:-1, 1:] - image[1:, :-1] + image[:-1, :-1]
    return np.concatenate([profile[: SIZE // 2], [residual.std(), np.abs(residual).mean()]])


def load(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    rows, labels = [], []
    for label, name in ((0, "real"), (1, "fake")):
        for path in sorted((folder / name).iterdir()):
            rows.append(features(path))
            labels.append(label)
    return np.array(rows), np.array(labels)


def report(name: str, clf: object, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    figures = []
    for set_name, (x, y) in sets.items():
        p = clf.predict_proba(x)[:, 1]
        figures.append(f"{set_name} acc {((p > 0.5) == y).mean():.3f} AUC {roc_auc_score(y, p):.3f}")
    print(name, "|", "; ".join(figures), flush=True)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    start = time.time()
    x, y = load(root / "rvf10k" / "train")
    sets = {"rvf10k test": load(root / "rvf10k" / "test"), "hardfake": load(root / "hardfake")}
    print(f"features: {time.time() - start:.0f} s, {x.shape}", flush=True)
    for c in (0.1, 1.0, 10.0):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(x, y)
        report(f"logistic regression C={c}", clf, sets)
    report("gradient boosting", HistGradientBoostingClassifier(max_iter=300).fit(x, y), sets)


if __name__ == "__main__":
    main()

"""Binary metrics with fake (1) as the positive class."""

import numpy as np
import pytest

from tfdeepfake.metrics import binary_metrics, choose_threshold, equal_error_rate, evaluation_report


def test_fake_is_positive_class_not_micro_average():
    # 8 real, 2 fake; the model calls everything real: accuracy 0.8, but recall on fake is 0.
    labels = [0] * 8 + [1] * 2
    scores = [0.1] * 10
    m = binary_metrics(labels, scores)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["recall"] == 0.0 and m["precision"] == 0.0 and m["f1"] == 0.0
    assert m["confusion_matrix"] == [[8, 0], [2, 0]]
    assert m["n_images"] == 10 and m["n_real"] == 8 and m["n_fake"] == 2


def test_precision_recall_f1_values():
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.1, 0.1]
    m = binary_metrics(labels, scores, threshold=0.5)
    # TP=3, FN=1, FP=1, TN=3
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(0.75)
    assert m["confusion_matrix"] == [[3, 1], [1, 3]]
    assert 0.5 < m["roc_auc"] <= 1.0


def test_eer_perfect_and_inverted():
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert equal_error_rate(labels, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]) == 0.0
    assert equal_error_rate(labels, [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]) == 1.0


def test_threshold_choice_separates_shifted_scores():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(200), np.ones(200)].astype(int)
    scores = np.r_[rng.uniform(0.0, 0.2, 200), rng.uniform(0.15, 0.35, 200)]  # all below 0.5
    t = choose_threshold(labels, scores)
    assert 0.14 <= t <= 0.21
    assert binary_metrics(labels, scores, t)["accuracy"] > binary_metrics(labels, scores, 0.5)["accuracy"]


def test_evaluation_report_has_required_keys():
    r = evaluation_report([0, 1, 0, 1], [0.2, 0.9, 0.4, 0.6], tuned_threshold=0.5)
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "average_precision", "eer",
                "confusion_matrix", "threshold", "n_images"):
        assert key in r and key in r["tuned"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="differ in length"):
        binary_metrics([0, 1], [0.5])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        binary_metrics([0, 2], [0.5, 0.5])
    with pytest.raises(ValueError, match="no images"):
        binary_metrics([], [])

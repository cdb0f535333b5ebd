"""Knowledge distillation (``train --teacher``, ``tfdeepfake.distill``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tfdeepfake import data as data_mod
from tfdeepfake.distill import (
    TEACHER_FILE,
    check_teacher,
    held_out_mask,
    soft_targets,
    teacher_runs,
)


def test_soft_targets_blend_label_and_teacher():
    labels, teacher = np.array([0, 1, 1, 0]), np.array([0.2, 0.9, 0.1, 0.0])
    np.testing.assert_allclose(soft_targets(labels, teacher, 0.25),
                               [0.05, 0.975, 0.775, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(soft_targets(labels, teacher, 0.0), labels)
    np.testing.assert_allclose(soft_targets(labels, teacher, 1.0), teacher, rtol=1e-6)
    with pytest.raises(ValueError, match="3 teacher"):
        soft_targets(labels, teacher[:3], 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        soft_targets(labels, teacher + 0.5, 0.5)
    with pytest.raises(ValueError, match="0 \\(real\\)"):
        soft_targets(labels + 1, teacher, 0.5)


def test_dataset_carries_targets_in_place_of_labels(tiny_dataset):
    index = data_mod.index_folder(tiny_dataset(6), val_fraction=0.2, test_fraction=0.0, seed=3)
    rows = index.rows("train")
    targets = np.linspace(0.05, 0.95, len(rows)).astype(np.float32)
    plain = data_mod.dataset_for(index, "train", image_size=32, batch_size=4, cache=False)
    soft = data_mod.dataset_for(index, "train", image_size=32, batch_size=4, cache=False, targets=targets)
    got = np.concatenate([np.asarray(y).reshape(-1) for _, y in soft])
    np.testing.assert_allclose(got, targets)  # in the split's row order
    np.testing.assert_array_equal(np.concatenate([np.asarray(y).reshape(-1) for _, y in plain]),
                                  rows["label"].to_numpy())
    shuffled = data_mod.dataset_for(index, "train", image_size=32, batch_size=4, cache=True, training=True,
                                    augment=data_mod.AugmentConfig(), targets=targets)
    seen = np.sort(np.concatenate([np.asarray(y).reshape(-1) for _, y in shuffled]))
    np.testing.assert_allclose(seen, np.sort(targets))  # every target once, augmented or not
    with pytest.raises(ValueError, match="targets"):
        data_mod.dataset_for(index, "train", image_size=32, batch_size=4, targets=targets[:-1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data_mod.dataset_for(index, "train", image_size=32, batch_size=4, targets=targets + 1)
    # a kept disk cache of the targets is never reused for other targets or plain labels
    paths = rows["path"].tolist()
    names = {data_mod.cache_name(paths, 32), data_mod.cache_name(paths, 32, targets=targets),
             data_mod.cache_name(paths, 32, targets=targets * 0.5)}
    assert len(names) == 3


def _train(data, out, *extra):
    from tfdeepfake import train

    assert train.main(["--model", "alexnet_rnn", "--data", str(data), "--image-size", "32", "--epochs", "1",
                       "--batch-size", "8", "--optimizer", "adam", "--no-augment", "--val-fraction", "0.25",
                       "--test-fraction", "0", "--out", str(out), *extra]) == 0
    return out


def test_teacher_targets_are_the_teachers_scores_and_reach_training(tiny_dataset, tmp_path, monkeypatch):
    from tfdeepfake import train
    from tfdeepfake.predict import predict

    data = tiny_dataset(8, size=32)
    teacher = _train(data, tmp_path / "teacher")
    given: dict = {}
    plain_split = train.split_dataset

    def spy(index, split, *args, **kwargs):
        if split == "train":
            given["targets"] = kwargs.get("targets")
        return plain_split(index, split, *args, **kwargs)

    monkeypatch.setattr(train, "split_dataset", spy)
    student = _train(data, tmp_path / "student", "--teacher", str(teacher), "--distill", "0.3", "--seed", "5",
                     "--split-seed", "1337")
    config = json.loads((student / "config.json").read_text())
    assert config["teacher"] == str(teacher) and config["distill"] == pytest.approx(0.3)

    table = pd.read_csv(student / TEACHER_FILE)
    split = pd.read_csv(student / "split.csv")
    assert table["path"].tolist() == split.loc[split["split"] == "train", "path"].tolist()
    np.testing.assert_allclose(table["target"], 0.7 * table["label"] + 0.3 * table["teacher"], atol=1e-6)
    np.testing.assert_allclose(given["targets"], table["target"], atol=1e-6)  # what training was fed
    # the teacher's column is what `predict` says of each file (accurate decoding, its flip averaging)
    scored = predict(teacher, table["path"].tolist(), progress=False)
    by_path = {r.path: r.probability_fake for r in scored.rows}
    np.testing.assert_allclose(table["teacher"], [by_path[p] for p in table["path"]], atol=1e-5)


def test_a_teacher_that_saw_the_validation_images_is_refused(tiny_dataset, tmp_path, capsys):
    import shutil

    from tfdeepfake import train

    data = tiny_dataset(8, size=32)
    teacher = _train(data, tmp_path / "teacher", "--seed", "7")  # another split of the same images
    with pytest.raises(SystemExit):
        _train(data, tmp_path / "student", "--teacher", str(teacher), "--seed", "1337")
    assert "validation/test images" in capsys.readouterr().err
    index = data_mod.index_folder(data, val_fraction=0.25, test_fraction=0.0, seed=7)
    check_teacher(teacher, index)  # its own split: accepted
    # an ensemble's folder is checked member by member
    ensemble = tmp_path / "ensemble"
    ensemble.mkdir()
    shutil.copy(teacher / "model.keras", ensemble / "model.keras")
    (ensemble / "ensemble.json").write_text(json.dumps(
        {"members": [{"name": "a", "model": str(teacher / "model.keras")}]}))
    assert teacher_runs(ensemble) == [("a", teacher)]
    other = data_mod.index_folder(data, val_fraction=0.25, test_fraction=0.0, seed=1337)
    with pytest.raises(ValueError, match=f"its run {teacher}"):
        check_teacher(ensemble, other)
    (ensemble / "ensemble.json").write_text(json.dumps(
        {"members": [{"name": "gone", "model": str(tmp_path / "gone" / "model.keras")}]}))
    with pytest.raises(FileNotFoundError, match="member gone's model"):
        teacher_runs(ensemble)
    with pytest.raises(ValueError, match="--teacher"):
        train.check_paths(train.parse_config(["--model", "alexnet", "--data", str(data), "--teacher",
                                              str(tmp_path / "none")]))
    with pytest.raises(ValueError, match="'distill'"):
        train.parse_config(["--model", "alexnet", "--distill", "0"])


def test_cross_fitted_teacher_scores_each_image_by_the_member_that_left_it_out(tiny_dataset, tmp_path, capsys):
    from tfdeepfake import ensemble, train
    from tfdeepfake.predict import predict

    data = tiny_dataset(8, size=32)
    folds = [_train(data, tmp_path / f"fold{k}", "--fold", str(k), "--folds", "2") for k in (1, 2)]
    trained = []
    for k, run in enumerate(folds, 1):
        split = pd.read_csv(run / "split.csv")
        assert json.loads((run / "config.json").read_text())["fold"] == k
        trained.append(set(split.loc[split["split"] == "train", "path"]))
    assert not trained[0] & trained[1]  # two folds: each image trained one member
    assert ensemble.main([*map(str, folds), "--name", "xfit", "--root", str(tmp_path), "--no-export"]) == 0
    teacher = tmp_path / "ensemble-xfit"
    student = _train(data, tmp_path / "student", "--teacher", str(teacher), "--cross-fit", "--distill", "0.4")
    assert json.loads((student / "config.json").read_text())["cross_fit"] is True
    table = pd.read_csv(student / TEACHER_FILE)
    assert set(table["path"]) == trained[0] | trained[1]
    by_member = [{r.path: r.probability_fake for r in predict(run, table["path"].tolist(), progress=False).rows}
                 for run in folds]
    out_of_fold = [by_member[1][p] if p in trained[0] else by_member[0][p] for p in table["path"]]
    np.testing.assert_allclose(table["teacher"], out_of_fold, atol=1e-5)
    np.testing.assert_allclose(table["target"], 0.6 * table["label"] + 0.4 * table["teacher"], atol=1e-6)
    assert "cross-fitted" in capsys.readouterr().out
    # a teacher whose members all trained on some image, a single model, and --cross-fit alone are refused
    seen = tmp_path / "seen"  # two members that trained on the same fold
    seen.mkdir()
    (seen / "ensemble.json").write_text(json.dumps({"members": [
        {"name": name, "model": str(folds[0] / "model.keras")} for name in ("a", "b")]}))
    (seen / "model.keras").write_bytes((teacher / "model.keras").read_bytes())
    paths = table["path"].tolist()
    with pytest.raises(ValueError, match="every member .* trained on 6 of the 12"):
        held_out_mask(seen, paths)
    with pytest.raises(ValueError, match="is one model"):
        held_out_mask(folds[0], paths)
    with pytest.raises(ValueError, match="'cross_fit'"):
        train.parse_config(["--model", "alexnet", "--cross-fit"])
    for bad in (["--fold", "3", "--folds", "2"], ["--fold", "0"], ["--fold", "1", "--folds", "1"]):
        with pytest.raises(ValueError, match="'fold"):
            train.parse_config(["--model", "alexnet", *bad])

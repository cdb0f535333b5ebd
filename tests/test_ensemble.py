"""Averaging ensemble: fusion layer maths and serialisation, run-like folder, evaluation with members."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import helpers_models as hm
import keras
import numpy as np
import pytest

from tfdeepfake.ensemble import (
    build_ensemble,
    ensemble_threshold,
    greedy_selection,
    main,
    parse_weights,
    split_ensemble,
    unique_names,
)
from tfdeepfake.models.fusion import FuseLogits, model_image_size
from tfdeepfake.runs import load_model, resolve_model
from tfdeepfake.scoring import score_by_member


def _fuse(logits: np.ndarray, **kwargs) -> np.ndarray:
    layer = FuseLogits(**kwargs)
    columns = [keras.ops.convert_to_tensor(logits[:, i:i + 1]) for i in range(logits.shape[1])]
    return keras.ops.convert_to_numpy(layer(columns))


def test_fuse_probability_mean_weighted_and_logit_mode():
    logits = np.array([[2.0, -1.0, 0.5], [-3.0, 4.0, 0.0]], np.float32)
    p = hm.sigmoid(logits)
    np.testing.assert_allclose(hm.sigmoid(_fuse(logits))[:, 0], p.mean(1), atol=1e-6)
    w = np.array([1.0, 2.0, 5.0])
    np.testing.assert_allclose(hm.sigmoid(_fuse(logits, member_weights=w))[:, 0],
                               (p * w).sum(1) / w.sum(), atol=1e-6)
    np.testing.assert_allclose(_fuse(logits, mode="logit", member_weights=w)[:, 0],
                               (logits * w).sum(1) / w.sum(), atol=1e-5)
    extreme = _fuse(np.array([[60.0, 60.0]], np.float32))  # clipped, stays finite
    assert np.isfinite(extreme).all() and extreme[0, 0] > 10


def test_fuse_layer_config_round_trip_and_validation():
    layer = FuseLogits([1, 3], "logit", name="fuse")
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == "tfdeepfake>FuseLogits"
    clone = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert (clone.member_weights, clone.mode, clone.name) == ([1.0, 3.0], "logit", "fuse")
    with pytest.raises(ValueError, match="mode"):
        FuseLogits(mode="median")
    with pytest.raises(ValueError, match="weights"):
        FuseLogits([1.0, -1.0])
    with pytest.raises(ValueError, match="weights"):
        FuseLogits([0.0, 0.0])
    with pytest.raises(ValueError, match="2 member weights for 3 members"):
        _fuse(np.zeros((1, 3), np.float32), member_weights=[1, 1])


def test_build_ensemble_needs_distinct_member_names():
    m = keras.Sequential([keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(1)], name="same")
    with pytest.raises(ValueError, match="distinct"):
        build_ensemble([m, m])
    with pytest.raises(ValueError, match="at least one"):
        build_ensemble([])


def test_parse_weights():
    assert parse_weights("1,2.5") == [1.0, 2.5] and parse_weights(None) is None
    with pytest.raises(ValueError, match="comma-separated"):
        parse_weights("1;2")


def test_ensemble_folder_contract_and_fusion():
    run = hm.ensemble_run()
    assert {"model.keras", "ensemble.json", "metrics.json"} <= {p.name for p in run.iterdir()}
    info = json.loads((run / "ensemble.json").read_text())
    assert [m["name"] for m in info["members"]] == ["resnet18-test", "alexnet-test"]
    assert [m["image_size"] for m in info["members"]] == [32, 48]
    # absolute: the record is read from other working folders (train --teacher ENSEMBLE)
    assert [m["model"] for m in info["members"]] == [str((r / "model.keras").resolve()) for r in hm.member_runs()]
    np.testing.assert_allclose(info["weights"], [1 / 3, 2 / 3])
    expected_threshold = (0.4 * 1 + 0.7 * 2) / 3  # weighted mean of the members' thresholds
    ref = resolve_model(run)
    assert ref.threshold == pytest.approx(expected_threshold) and ref.name == "ensemble-tiny"

    model = hm.keras_ensemble()  # loaded with safe_mode=True
    assert model.name == "tiny" and model_image_size(model) == 48
    assert model.input_shape == (None, None, None, 3) and model.output_shape == (None, 1)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    members, fuse = split_ensemble(model)
    assert [m.name for m in members] == ["resnet18-test", "alexnet-test"] and fuse.mode == "prob"
    assert [model_image_size(m) for m in members] == [32, 48]

    x = np.random.default_rng(0).uniform(0, 255, (3, 70, 50, 3)).astype(np.float32)  # any size
    out = np.asarray(model.predict_on_batch(x))
    assert out.shape == (3, 1) and out.dtype == np.float32
    originals = [load_model(r / "model.keras") for r in hm.member_runs()]
    p = np.stack([hm.sigmoid(m.predict_on_batch(x))[:, 0] for m in originals], axis=1)
    np.testing.assert_allclose(hm.sigmoid(out)[:, 0], p @ np.array([1, 2]) / 3, atol=1e-5)


def test_score_by_member_runs_each_member_once_at_its_own_size(tiny_dataset):
    """Members of 32 and 48 px on 40 px images: each sees its own resize of the original (not a resize
    of the 48 px batch), and the ensemble score is the fuse layer over those member scores."""
    from tfdeepfake import data as data_mod
    from tfdeepfake.ensemble import score_by_member
    from tfdeepfake.scoring import predict_scores

    index = data_mod.index_eval_folder(tiny_dataset(4, size=40))
    sizes_asked: list[int] = []

    def at(size: int):
        sizes_asked.append(size)
        return data_mod.dataset_for(index, "test", image_size=size, batch_size=3)

    labels, scores, members = score_by_member(hm.keras_ensemble(), at)
    assert sorted(sizes_asked) == [32, 48] and list(members) == ["resnet18-test", "alexnet-test"]
    own = []
    for run, size in zip(hm.member_runs(), (32, 48), strict=True):
        y, p = predict_scores(load_model(run / "model.keras"), at(size))
        np.testing.assert_array_equal(y, labels)
        own.append(p)
    np.testing.assert_allclose(members["resnet18-test"], own[0], atol=1e-6)
    np.testing.assert_allclose(members["alexnet-test"], own[1], atol=1e-6)
    np.testing.assert_allclose(scores, (own[0] + 2 * own[1]) / 3, atol=1e-5)
    # the 32 px member fed the 48 px batch (resized twice) scores differently: the case this guards
    _, twice = predict_scores(load_model(hm.member_runs()[0] / "model.keras"), at(48))
    assert np.abs(twice - own[0]).max() > 1e-6

    single = load_model(hm.member_runs()[0] / "model.keras")
    y, p, none = score_by_member(single, at)
    assert none == {} and sizes_asked[-1] == 32
    np.testing.assert_allclose(p, own[0], atol=1e-6)


def test_single_model_is_its_own_only_member():
    model = load_model(hm.member_runs()[0] / "model.keras")
    assert split_ensemble(model) == ([model], None)


def _pooling_model(name: str, scale: float) -> keras.Model:
    image = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(image)
    return keras.Model(image, keras.layers.Rescaling(scale)(keras.layers.Dense(1)(x)), name=name)


def test_members_come_from_the_fuse_layers_config_not_from_keras_internals(tmp_path):
    # members called a then b, fused as [b, a]: the order recorded in FuseLogits' config wins, and it
    # survives a save and a safe_mode load
    a, b = _pooling_model("a", 1.0), _pooling_model("b", -3.0)
    image = keras.Input((None, None, 3), name="image")
    la, lb = a(image), b(image)
    fused = FuseLogits([1.0, 3.0], "logit", members=["b", "a"], name="fuse")([lb, la])
    keras.Model(image, fused, name="manual").save(tmp_path / "manual.keras")
    model = load_model(tmp_path / "manual.keras")
    members, fuse = split_ensemble(model)
    assert [m.name for m in members] == ["b", "a"] and fuse.get_config()["members"] == ["b", "a"]
    x = np.full((2, 8, 8, 3), 7.0, np.float32)
    _, scores, by_member = score_by_member(model, lambda size: [(x, np.zeros(2))])
    np.testing.assert_allclose(scores, hm.sigmoid(model.predict_on_batch(x))[:, 0], atol=1e-6)
    assert list(by_member) == ["b", "a"]
    # a file saved before the names were recorded: the nested models in layer order
    legacy = build_ensemble([_pooling_model("c", 1.0), _pooling_model("d", 2.0)], name="legacy")
    legacy.get_layer("fuse").members = None
    assert [m.name for m in split_ensemble(legacy)[0]] == ["c", "d"]
    with pytest.raises(ValueError, match="1 member names for 2 members"):
        FuseLogits(members=["only"])([la, lb])


def test_evaluate_cli_reports_each_member_beside_the_ensemble(tiny_dataset, tmp_path):
    """``python -m tfdeepfake.evaluate`` in a fresh process loads the ensemble (FuseLogits registered)."""
    data = tiny_dataset(4, size=40)
    out = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, "-m", "tfdeepfake.evaluate", str(hm.ensemble_run()),
                           "--data", str(data), "--batch-size", "4", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["members"]) == {"resnet18-test", "alexnet-test"}
    assert result["n_images"] == 8 and "tuned" in result and result["image_size"] == 48
    for member in result["members"].values():
        assert member["n_images"] == 8
    assert "member resnet18-test" in proc.stdout and "member alexnet-test" in proc.stdout


def _run_copy(src: Path, dst: Path, split: Path | None) -> Path:
    """A run folder sharing ``src``'s model (symlink), with a ``split.csv`` listing ``split``'s images."""
    dst.mkdir(parents=True)
    (dst / "model.keras").symlink_to(src / "model.keras")
    (dst / "metrics.json").write_text((src / "metrics.json").read_text())
    if split is not None:
        rows = [f"{p},{int(p.parent.name == 'fake')},val," for p in sorted(split.rglob("*.png"))]
        (dst / "split.csv").write_text("path,label,split,reason\n" + "\n".join(rows) + "\n")
    return dst


def test_cli_logit_mode_threshold_on_shared_validation_split(tiny_dataset, tmp_path, capsys):
    val = tiny_dataset(4, size=40)
    src = hm.member_runs()[0]
    runs = [str(_run_copy(src, tmp_path / name, val)) for name in ("first", "second")]
    assert main([*runs, "--name", "cli", "--mode", "logit", "--weights", "1,3",
                 "--root", str(tmp_path), "--no-export"]) == 0
    assert "shared validation split (8 images)" in capsys.readouterr().out
    folder = tmp_path / "ensemble-cli"
    info = json.loads((folder / "ensemble.json").read_text())
    assert info["mode"] == "logit" and [m["name"] for m in info["members"]] == ["first", "second"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["val"]["n_images"] == 8 and metrics["threshold"] == metrics["val"]["threshold"]
    assert resolve_model(folder).threshold == pytest.approx(metrics["threshold"])

    model = load_model(folder / "model.keras")
    members, fuse = split_ensemble(model)
    x = np.full((1, 33, 33, 3), 128.0, np.float32)
    logits = np.array([float(np.asarray(m.predict_on_batch(x))[0, 0]) for m in members])
    assert float(np.asarray(model.predict_on_batch(x))[0, 0]) == pytest.approx(
        float(logits @ np.array([0.25, 0.75])), abs=1e-4)
    assert not (tmp_path / "saved_models").exists()


def test_threshold_sources(tiny_dataset, tmp_path):
    model = hm.keras_ensemble()
    refs = [resolve_model(r) for r in hm.member_runs()]
    threshold, source, val = ensemble_threshold(model, refs)
    assert threshold == pytest.approx((0.4 + 2 * 0.7) / 3) and val is None and "mean" in source
    data = tiny_dataset(3, size=40)
    threshold, source, val = ensemble_threshold(model, refs, val_data=data)
    assert 0.0 <= threshold <= 1.0 and val["n_images"] == 6 and str(data) in source
    no_threshold = _run_copy(hm.member_runs()[0], tmp_path / "bare", None)
    (no_threshold / "metrics.json").unlink()
    assert ensemble_threshold(model, [refs[0], resolve_model(no_threshold)])[0] == 0.5
    assert unique_names(["a", "a", "b", "a"]) == ["a", "a_2", "b", "a_3"]


def test_cli_errors_exit_2(tmp_path):
    runs = [str(r) for r in hm.member_runs()]
    for bad in (["--weights", "1"], ["--weights", "a,b"], ["--mode", "median"]):
        with pytest.raises(SystemExit) as exc:
            main([*runs, "--name", "bad", "--root", str(tmp_path), "--no-export", *bad])
        assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "missing"), "--name", "bad", "--root", str(tmp_path), "--no-export"])
    assert exc.value.code == 2


# ------------------------------------------------------------------------------- choosing members
def test_greedy_selection_adds_what_complements_and_stops_when_nothing_helps():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    noise = rng.normal(size=(3, 400))
    signal = y * 1.0
    most = np.arange(400) % 5 != 0
    # "a" sees the label on 80 % of the images, "b" on the other 20 %; "a_copy" repeats "a"; "bad" is noise
    a = 1 / (1 + np.exp(-(np.where(most, 4 * (signal - 0.5), 0) + 0.05 * noise[0])))
    b = 1 / (1 + np.exp(-(np.where(~most, 4 * (signal - 0.5), 0) + 0.05 * noise[1])))
    bad = 1 / (1 + np.exp(-noise[2]))
    scores = {"bad": bad, "a": a, "a_copy": a.copy(), "b": b}
    steps = greedy_selection(y, scores)
    assert [name for name, _ in steps] == ["a", "b"]  # not the copy of a, not the noise
    aucs = [auc for _, auc in steps]
    assert aucs[1] == 1.0 > aucs[0] > 0.8  # together they rank every image right; nothing can add
    from sklearn.metrics import roc_auc_score
    assert aucs[1] == pytest.approx(roc_auc_score(y, (a + b) / 2))
    assert greedy_selection(y, scores, max_members=1) == steps[:1]
    # logit mode fuses mean logits: the same choice here, its AUC that of the logit mean
    logit = greedy_selection(y, scores, mode="logit")
    assert [n for n, _ in logit] == ["a", "b"]
    lg = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert logit[1][1] == pytest.approx(roc_auc_score(y, lg(a) + lg(b)))
    with pytest.raises(ValueError, match="both classes"):
        greedy_selection(np.zeros(400), scores)
    with pytest.raises(ValueError, match="mode"):
        greedy_selection(y, scores, mode="median")


def test_cli_select_greedy_chooses_on_the_shared_split_and_records_it(tiny_dataset, tmp_path, capsys):
    val = tiny_dataset(4, size=40)
    a, b = hm.member_runs()
    runs = [str(_run_copy(src, tmp_path / name, val)) for src, name in ((a, "one"), (a, "two"), (b, "three"))]
    assert main([*runs, "--name", "pick", "--select", "greedy", "--root", str(tmp_path), "--no-export"]) == 0
    out = capsys.readouterr().out
    assert "of 3 runs (chosen on the members' shared validation split (8 images)" in out
    info = json.loads((tmp_path / "ensemble-pick" / "ensemble.json").read_text())
    selection = info["selection"]
    assert selection["method"] == "greedy" and selection["candidates"] == ["one", "two", "three"]
    chosen = [step["member"] for step in selection["steps"]]
    assert [m["name"] for m in info["members"]] == chosen and chosen[0] in ("one", "three")
    assert "two" not in chosen  # the same model as "one": adding it never raises the AUC
    aucs = [step["val_roc_auc"] for step in selection["steps"]]
    assert aucs == sorted(aucs) and len(set(aucs)) == len(aucs)

    for bad in (["--weights", "1,1,1"], ["--max-members", "0"]):
        with pytest.raises(SystemExit) as exc:
            main([*runs, "--name", "bad", "--select", "greedy", "--root", str(tmp_path), "--no-export", *bad])
        assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:  # --max-members alone
        main([*runs, "--name", "bad", "--max-members", "2", "--root", str(tmp_path), "--no-export"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:  # no validation images to choose on
        main([str(r) for r in hm.member_runs()] + ["--name", "bad", "--select", "greedy", "--root",
                                                   str(tmp_path), "--no-export"])
    assert exc.value.code == 2
    assert "validation images" in capsys.readouterr().err

"""``python -m tfdeepfake.predict``: model kinds, folders with bad files, videos, faces, explanations."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from tfdeepfake.ensemble import build_ensemble
from tfdeepfake.export import export_model
from tfdeepfake.media import expand_paths, frame_indices, read_image, read_video_frames
from tfdeepfake.predict import Prediction, Scorer, load_scorer, main, predict
from tfdeepfake.savedmodel import keras_beside

SIZE = 48


# ------------------------------------------------------------------------------------------ helpers
def tiny_cnn(name: str = "tiny", seed: int = 0) -> keras.Model:
    """The contract in miniature: raw RGB (any size) -> resize -> normalise -> conv 'features' -> logit."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3), name="image")
    x = keras.layers.Resizing(SIZE, SIZE, name="resize")(inputs)
    x = keras.layers.Normalization(mean=[124.0, 116.0, 104.0], variance=[3400.0, 3200.0, 3300.0],
                                   name="normalize")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv")(x)
    x = keras.layers.Activation("relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(1, dtype="float32", name="logit")(x)
    return keras.Model(inputs, outputs, name=name)


def tiny_ensemble() -> keras.Model:
    """Two tiny members fused by ``tfdeepfake.ensemble``."""
    return build_ensemble([tiny_cnn("member_a", 1), tiny_cnn("member_b", 2)], name="ens")


def write_video(path: Path, images: list[Path], fourcc: str, size: int = 96) -> list[np.ndarray]:
    """Write one frame per image with OpenCV; return the frames as written (RGB)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (size, size))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc}"
    frames = []
    for image in images:
        rgb = cv2.resize(read_image(image), (size, size), interpolation=cv2.INTER_AREA)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        frames.append(rgb)
    writer.release()
    return frames


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same weights as a run folder, a .keras file and SavedModels; an ensemble run and export."""
    root = tmp_path_factory.mktemp("models")
    run = root / "run"
    run.mkdir()
    tiny_cnn().save(run / "model.keras")
    (run / "metrics.json").write_text(json.dumps({"threshold": 0.37}))
    single = root / "single.keras"
    shutil.copy(run / "model.keras", single)
    saved = export_model(run, "tiny", root=root / "saved_models")  # threshold 0.37 from the run
    bare = export_model(single, "bare", root=root / "saved_models")
    (bare.parent / "bare.keras").unlink()  # a SavedModel alone: no Keras model to explain
    ens_run = root / "ens_run"
    ens_run.mkdir()
    tiny_ensemble().save(ens_run / "model.keras")
    ens_saved = export_model(ens_run, "ens", root=root / "saved_models")
    return {"run": run, "keras": single, "saved": saved.parent, "saved_version": saved,
            "bare": bare.parent, "ensemble": ens_run, "ensemble_saved": ens_saved.parent}


@pytest.fixture(scope="module")
def faces_dir(shared_data: Path) -> list[Path]:
    return (sorted((shared_data / "rvf10k" / "test" / "real").glob("*.jpg"))[:3]
            + sorted((shared_data / "rvf10k" / "test" / "fake").glob("*.jpg"))[:3]
            + sorted((shared_data / "hardfake" / "fake").glob("*.jpg"))[:2])


# ---------------------------------------------------------------------------------------- media
def test_frame_indices_are_even_and_cover_the_video() -> None:
    assert frame_indices(12, 5) == [0, 3, 6, 8, 11]
    assert frame_indices(3, 16) == [0, 1, 2]
    assert frame_indices(0, 4) == []


def test_expand_paths_walks_folders_and_keeps_missing(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.jpg").write_bytes(b"x")
    (tmp_path / "a" / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / "a" / "y.png").write_bytes(b"x")
    got = expand_paths([tmp_path / "a", tmp_path / "missing.jpg"])
    assert got == [tmp_path / "a" / "y.png", tmp_path / "a" / "b" / "x.jpg",
                   tmp_path / "missing.jpg"]


# ---------------------------------------------------------------------------------- model kinds
def test_all_model_kinds_give_the_same_scores(models: dict[str, Path], faces_dir: list[Path]
                                              ) -> None:
    images = [read_image(p) for p in faces_dir]  # 256 px and 300 px images: two shape groups
    scores = {}
    for kind in ("run", "keras", "saved", "saved_version"):
        scorer = load_scorer(models[kind])
        scores[kind] = scorer(images).probability_fake
        assert scores[kind].shape == (len(images),)
    assert load_scorer(models["run"]).kind == "keras"
    assert load_scorer(models["saved"]).kind == "savedmodel"
    for kind in ("keras", "saved", "saved_version"):
        np.testing.assert_allclose(scores[kind], scores["run"], atol=1e-4)
    # one image at a time gives the same as the batch
    one = load_scorer(models["keras"])([images[0]]).probability_fake
    np.testing.assert_allclose(one, scores["run"][:1], atol=1e-5)


def test_ensemble_scores_members_the_same_in_keras_and_saved_model(
        models: dict[str, Path], faces_dir: list[Path]) -> None:
    images = [read_image(p) for p in faces_dir[-3:]]
    keras_scorer, saved_scorer = load_scorer(models["ensemble"]), load_scorer(models["ensemble_saved"])
    assert keras_scorer.member_names == saved_scorer.member_names == ("member_a", "member_b")
    k, s = keras_scorer(images), saved_scorer(images)
    np.testing.assert_allclose(s.probability_fake, k.probability_fake, atol=1e-4)
    np.testing.assert_allclose(s.members, k.members, atol=1e-4)
    model = keras_scorer.model  # the fused score is the ensemble model's own output
    direct = 1 / (1 + np.exp(-np.asarray(model.predict_on_batch(
        images[0][None].astype(np.float32)), np.float64)))
    assert k.probability_fake[0] == pytest.approx(float(direct.reshape(-1)[0]), abs=1e-6)
    assert np.mean(k.members[0]) == pytest.approx(k.probability_fake[0], abs=1e-5)  # mean of probs


def test_an_export_without_member_names_gets_the_same_fallback_names_in_predict_and_serve(
        models: dict[str, Path], tmp_path: Path) -> None:
    # one SavedModel loader (savedmodel.ExportedModel) serves both, so both name unnamed members alike
    from tfdeepfake.savedmodel import INFO_FILE, ExportedModel, find_saved_model
    from tfdeepfake.serve import ServedModel

    copy = tmp_path / "unnamed"
    shutil.copytree(find_saved_model(models["ensemble_saved"]), copy / "1")
    info = json.loads((copy / "1" / INFO_FILE).read_text())
    (copy / "1" / INFO_FILE).write_text(json.dumps({**info, "members": []}))
    assert ExportedModel(copy / "1").members == ["member_0", "member_1"]
    assert ServedModel(copy).members == ["member_0", "member_1"]
    assert load_scorer(copy).member_names == ("member_0", "member_1")


def test_thresholds_default_to_the_run_and_can_be_overridden(models: dict[str, Path]) -> None:
    assert load_scorer(models["run"]).threshold == pytest.approx(0.37)
    assert load_scorer(models["keras"]).threshold == 0.5  # no metrics.json beside it
    assert load_scorer(models["run"], threshold=0.9).threshold == 0.9
    saved = load_scorer(models["saved"])
    assert saved.threshold is None  # its own label output, which applies the exported 0.37
    assert saved.verdict_threshold == pytest.approx(0.37)
    assert load_scorer(models["saved"], threshold=0.8).verdict_threshold == 0.8
    image = np.full((40, 40, 3), 128, np.uint8)
    p = float(load_scorer(models["run"])([image]).probability_fake[0])
    for t in (max(0.0, p - 0.01), min(1.0, p + 0.01)):
        assert load_scorer(models["run"], threshold=t)([image]).label[0] == int(p >= t)


def test_bad_model_paths_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_scorer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        load_scorer(tmp_path / "empty")
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "nope"), str(tmp_path)])
    assert exc.value.code == 2


# --------------------------------------------------------------------------- folders, bad files
def test_mixed_folder_reports_bad_files_and_continues(
        models: dict[str, Path], faces_dir: list[Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(faces_dir[0], folder / "good.jpg")
    shutil.copy(faces_dir[-1], folder / "sub" / "good2.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake_image.jpg").write_text("text pretending to be a JPEG")
    (folder / "truncated.jpg").write_bytes(faces_dir[1].read_bytes()[:2000])
    out_csv, out_json = tmp_path / "o.csv", tmp_path / "o.json"
    rc = main([str(models["run"]), str(folder), str(tmp_path / "missing.png"), "--csv",
               str(out_csv), "--json", str(out_json), "--no-progress"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "good.jpg" in stdout and "empty file" in stdout
    rows = {Path(r["path"]).name: r for r in csv.DictReader(out_csv.open())}
    assert set(rows) == {"good.jpg", "good2.jpg", "empty.jpg", "notes.txt", "fake_image.jpg",
                         "truncated.jpg", "missing.png"}
    for name in ("good.jpg", "good2.jpg"):
        assert rows[name]["status"] == "ok" and rows[name]["label"] in ("real", "fake")
        assert 0.0 <= float(rows[name]["probability_fake"]) <= 1.0
        assert rows[name]["face"] == "" and rows[name]["frame"] == ""
    reasons = {name: rows[name]["reason"] for name in rows if rows[name]["status"] == "error"}
    assert "0 bytes" in reasons["empty.jpg"]
    assert "unsupported file type .txt" in reasons["notes.txt"]
    assert "not an image" in reasons["fake_image.jpg"]
    assert "truncated" in reasons["truncated.jpg"] and reasons["truncated.jpg"].startswith("JPEG image")
    assert "not found" in reasons["missing.png"]
    assert all(rows[n]["probability_fake"] == "" for n in reasons)
    data = json.loads(out_json.read_text())
    assert data["threshold"] == pytest.approx(0.37) and len(data["rows"]) == 7
    # JSON and CSV agree; the label follows the run's threshold
    good = next(r for r in data["rows"] if r["path"].endswith("good.jpg"))
    assert good["label"] == ("fake" if good["probability_fake"] >= 0.37 else "real")


def test_nothing_readable_exits_non_zero(models: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.txt").write_text("hello")
    assert main([str(models["keras"]), str(tmp_path), "--no-progress"]) == 1
    assert main([str(models["keras"]), str(tmp_path / "nothing_here"), "--no-progress"]) == 1


# ---------------------------------------------------------------------------------------- videos
@pytest.mark.parametrize(("fourcc", "ext"), [("mp4v", ".mp4"), ("MJPG", ".avi")])
def test_video_is_scored_per_frame_and_aggregated(
        models: dict[str, Path], shared_data: Path, tmp_path: Path, fourcc: str, ext: str) -> None:
    sources = sorted((shared_data / "rvf10k" / "test" / "fake").glob("*.jpg"))[:12]
    video = tmp_path / f"clip{ext}"
    write_video(video, sources, fourcc)
    frames = read_video_frames(video, 5)
    assert [i for i, _ in frames] == [0, 3, 6, 8, 11]
    assert all(f.shape == (96, 96, 3) and f.dtype == np.uint8 for _, f in frames)

    scorer = load_scorer(models["run"])
    result = predict(scorer, [video], frames=5, progress=False)
    frame_rows = [r for r in result.rows if r.kind == "frame"]
    video_rows = [r for r in result.rows if r.kind == "video"]
    assert [r.frame for r in frame_rows] == [0, 3, 6, 8, 11]
    assert len(video_rows) == 1 and result.rows[-1] is video_rows[0]
    expected = scorer([f for _, f in frames]).probability_fake
    got = np.array([r.probability_fake for r in frame_rows])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    agg = video_rows[0]
    assert agg.probability_fake == pytest.approx(expected.mean())
    assert agg.probability_max == pytest.approx(expected.max())
    assert agg.n_scored == 5
    assert agg.label == ("fake" if expected.mean() >= 0.37 else "real")
    assert len(set(np.round(got, 6))) > 1  # different frames, different scores


def test_broken_video_is_reported(models: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (tmp_path / "empty.avi").write_bytes(b"")
    result = predict(load_scorer(models["keras"]), [tmp_path], progress=False)
    assert [(Path(r.path).name, r.kind, r.status) for r in result.rows] == [
        ("broken.mp4", "video", "error"), ("empty.avi", "video", "error")]
    assert result.n_read == 0 and all(r.reason for r in result.rows)


# ------------------------------------------------------------------------------ faces, explain
def test_faces_are_cropped_and_faceless_images_not_scored(
        models: dict[str, Path], faces_dir: list[Path], tmp_path: Path) -> None:
    face = read_image(faces_dir[0])
    canvas = np.full((320, 480, 3), 90, np.uint8)
    small = cv2.resize(face, (128, 128), interpolation=cv2.INTER_AREA)
    canvas[150:278, 300:428] = small
    cv2.imwrite(str(tmp_path / "scene.png"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((120, 160, 3), 200, np.uint8))
    result = predict(load_scorer(models["run"]), [tmp_path], faces=True, progress=False)
    rows = {Path(r.path).name: r for r in result.rows}
    assert rows["blank.png"].status == "no_face" and rows["blank.png"].probability_fake is None
    scene = rows["scene.png"]
    assert scene.status == "ok" and scene.face is not None and scene.probability_fake is not None
    x, y, w, h = scene.face
    assert w == h and 300 - 40 <= x <= 330 and 150 - 40 <= y <= 190 and 100 <= w <= 200
    assert result.n_read == 2
    # the face score is the score of that crop
    crop = canvas[y:y + h, x:x + w]
    assert scene.probability_fake == pytest.approx(
        float(load_scorer(models["run"])([crop]).probability_fake[0]), abs=1e-6)


def test_explain_writes_overlays_for_single_models_and_ensembles(
        models: dict[str, Path], faces_dir: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "cams"
    result = predict(models["ensemble"], faces_dir[:2], explain_dir=out, progress=False)
    assert result.member_names == ("member_a", "member_b")
    for row in result.rows:
        assert set(row.members) == {"member_a", "member_b"}
        png = Path(row.explanation)
        assert png.parent == out and png.is_file()
        panel = read_image(png)
        assert panel.shape[1] > 2.5 * panel.shape[0]  # input + one overlay per member
    rc = main([str(models["run"]), str(faces_dir[0]), "--explain", str(tmp_path / "c2"),
               "--no-progress"])
    assert rc == 0 and len(list((tmp_path / "c2").glob("*.png"))) == 1


def test_explain_needs_a_keras_model(models: dict[str, Path], faces_dir: list[Path],
                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([str(models["bare"]), str(faces_dir[0]), "--explain", str(tmp_path / "x")])
    assert exc.value.code == 2 and "Grad-CAM needs the Keras model" in capsys.readouterr().err
    # a SavedModel with its .keras beside it explains with that file
    scorer = load_scorer(models["saved"])
    assert scorer.keras_path is not None and scorer.keras_path.name == "tiny.keras"
    assert isinstance(scorer, Scorer) and scorer.keras_model() is not None
    assert main([str(models["saved"]), str(faces_dir[0]), "--explain", str(tmp_path / "y"),
                 "--no-progress"]) == 0
    assert len(list((tmp_path / "y").glob("*.png"))) == 1
    # NAME.keras is the newest version's model: an older version has none to explain with
    newer = export_model(models["keras"], "tiny", root=models["saved"].parent)
    assert keras_beside(newer) == models["saved"] / "tiny.keras"
    assert keras_beside(models["saved_version"]) is None


def test_prediction_table_lists_every_row(models: dict[str, Path], faces_dir: list[Path]) -> None:
    result = predict(models["keras"], faces_dir[:2], progress=False)
    assert isinstance(result, Prediction)
    lines = result.table().splitlines()
    assert lines[0].split()[:5] == ["path", "frame", "face", "p(fake)", "label"]
    assert len(lines) == 2 + 2

"""A tiny end-to-end experiment: two small models, 32 px, one epoch, a test and a cross-dataset folder."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tfdeepfake import experiment, report


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Run the CLI once for the module (tiny data written with conftest's helper)."""
    from conftest import write_tiny_images

    root = tmp_path_factory.mktemp("exp")
    for folder, n, seed in (("train", 10, 0), ("test", 4, 1), ("other", 4, 2)):
        write_tiny_images(root / folder / "real", n, fake=False, seed=seed, prefix="real")
        write_tiny_images(root / folder / "fake", n, fake=True, seed=seed, prefix="fake")
    out = root / "out"
    from tfdeepfake.config import TrainConfig

    TrainConfig(model="all", optimizer="adam", lr=0.002, l2=0.0).save(root / "rnn.json")  # alexnet_rnn's own
    rc = experiment.main(["--data", str(root / "train"), "--test-data", str(root / "test"),
                          "--cross-data", str(root / "other"), "--models", "alexnet", "alexnet_rnn",
                          "--image-size", "32", "--epochs", "1", "--model-epochs", "alexnet_rnn=2",
                          "--model-image-size", "alexnet_rnn=40", "--model-input", "alexnet_rnn=rgb+wavelet",
                          "--model-config", f"alexnet_rnn={root / 'rnn.json'}", "--batch-size", "8",
                          "--robustness-images", "6", "--cache", "none", "--out", str(out)])
    assert rc == 0
    return root, out


def test_report_table_has_a_row_per_model_and_the_ensemble(finished):
    root, out = finished
    report = (out / "REPORT.md").read_text()
    assert report.startswith("# tfdeepfake experiment report")
    assert "python -m tfdeepfake.experiment --data" in report
    for section in ("## Test folder", "## Cross-dataset: other", "## Robustness", "## Goals of issue #11"):
        assert section in report
    test_table = report.split("## Test folder")[1].split("##")[0]
    rows = [line for line in test_table.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["alexnet", "alexnet_rnn", "ensemble"]
    for header in ("accuracy", "precision", "recall", "f1", "roc_auc", "average_precision", "eer",
                   "params", "train s"):
        assert header in rows[0]


def test_plots_and_results(finished):
    root, out = finished
    for name in ("curves-alexnet", "curves-alexnet_rnn", "confusion-alexnet", "confusion-ensemble",
                 "roc-test", "roc-other", "robustness"):
        assert (out / f"{name}.png").stat().st_size > 1000, name
    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]) == {"alexnet", "alexnet_rnn", "ensemble"}
    assert results["results"]["ensemble"]["test"]["n_images"] == 8
    assert results["results"]["ensemble"]["other"]["n_images"] == 8
    assert len(results["robustness"]) == 3 * 18 and {r["n_images"] for r in results["robustness"]} == {6}
    # --test-data given: nothing carved from the training folder for testing
    split = (out / "runs" / "alexnet" / "split.csv").read_text()
    assert ",test," not in split and ",val," in split
    # a scale-out flag reaches every member's config, the rest keep TrainConfig's defaults
    assert json.loads((out / "experiment.json").read_text())["train_options"] == {"cache": "none"}
    for name in ("alexnet", "alexnet_rnn"):
        member = json.loads((out / "runs" / name / "config.json").read_text())
        assert (member["cache"], member["strategy"]) == ("none", "auto")


def test_only_the_chief_worker_goes_on_after_training(tmp_path, monkeypatch):
    cfg = experiment.ExperimentConfig(models=["alexnet"], out=str(tmp_path / "exp"),
                                      train_options={"strategy": "multiworker"})
    monkeypatch.setattr(experiment, "train_models", lambda cfg, log, **kw: {})
    went_on = []
    monkeypatch.setattr(experiment, "select_members", lambda runs, k: went_on.append(k) or [])
    monkeypatch.setattr(experiment, "ensemble_runs", lambda *a: (_ for _ in ()).throw(RuntimeError("chief")))
    hosts = ["127.0.0.1:1", "127.0.0.1:2"]
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": hosts},
                                                "task": {"type": "worker", "index": 1}}))
    assert experiment.training_worker(cfg).index == 1
    report = experiment.run_experiment(cfg, log=lambda line: None)
    assert report == tmp_path / "exp" / experiment.REPORT_FILE and not report.exists() and not went_on
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": hosts},
                                                "task": {"type": "worker", "index": 0}}))
    assert experiment.training_worker(cfg).chief
    with pytest.raises(RuntimeError, match="chief"):  # the chief goes on to the ensemble
        experiment.run_experiment(cfg, log=lambda line: None)
    assert went_on == [cfg.ensemble_size]


def test_cross_folders_get_unique_file_safe_labels(tmp_path):
    """A cross-dataset folder named like the test set (or like another) gets a label of its own that
    is a plain name: labels name the ROC plot files (a full path there crashed the report)."""
    from conftest import write_tiny_images

    for folder in ("test", "a/test", "b/other", "c/other"):
        write_tiny_images(tmp_path / folder / "real", 2, fake=False, seed=0, prefix="real")
        write_tiny_images(tmp_path / folder / "fake", 2, fake=True, seed=0, prefix="fake")
    cfg = experiment.ExperimentConfig(test_data=str(tmp_path / "test"), out=str(tmp_path / "exp"),
                                      cross_data=[str(tmp_path / f) for f in ("a/test", "b/other", "c/other")])
    sets = experiment.eval_sets(cfg)
    assert list(sets) == ["test", "test-2", "other", "other-2"]
    assert [len(s.rows("test")) for s in sets.values()] == [4, 4, 4, 4]


def test_members_are_chosen_on_validation(tmp_path):
    runs = {}
    for name, auc, acc in (("a", 0.6, 0.9), ("b", 0.8, 0.5), ("c", 0.8, 0.7), ("d", float("nan"), 1.0)):
        run = tmp_path / name
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({"val": {"roc_auc": auc, "accuracy": acc},
                                                      "test": {"roc_auc": 1.0}}))
        runs[name] = run
    assert experiment.select_members(runs, 3) == ["c", "b", "a"]
    assert experiment.select_members(runs, 0) == ["c"]


def test_goal_lines_say_by_how_much():
    results = {"ensemble": {"test": {"accuracy": 0.9, "roc_auc": 0.995, "tuned": {"accuracy": 0.96}},
                            "hardfake": {"roc_auc": 0.94, "tuned": {"accuracy": 0.86}}},
               "a": {"test": {"accuracy": 0.91}}, "b": {"test": {"accuracy": 0.85}}}
    lines = report.goal_lines(results, ["test", "hardfake"], {"a": {"train_seconds": 2400}})
    assert lines[0].startswith("- ensemble test accuracy (threshold 0.5) ≥ 95%: 90.0 %")
    assert lines[0].endswith("MISSED by 5.0 points")
    assert "@val thr" in lines[1] and lines[1].endswith("met")
    assert "ROC AUC ≥ 0.99: 0.995" in lines[2] and lines[2].endswith("met")
    assert "a, 91.0 % after 40.0 min of training — met (over the time limit)" in lines[3]
    assert "hardfake" in lines[4] and lines[4].endswith("MISSED by 0.010")
    assert lines[5].endswith("86.0 % — met")


def test_model_epochs_override_epochs_for_one_model(finished):
    root, out = finished
    epochs = {name: json.loads((out / "runs" / name / "config.json").read_text())["epochs"]
              for name in ("alexnet", "alexnet_rnn")}
    assert epochs == {"alexnet": 1, "alexnet_rnn": 2}
    sizes = {name: json.loads((out / "runs" / name / "config.json").read_text())["image_size"]
             for name in ("alexnet", "alexnet_rnn")}
    assert sizes == {"alexnet": 32, "alexnet_rnn": 40}  # --model-image-size; the ensemble feeds each its own
    assert "image size 32 px (alexnet_rnn: 40 px)" in (out / "REPORT.md").read_text()
    assert json.loads((out / "runs" / "alexnet_rnn" / "metrics.json").read_text())["epochs_run"] == 2


def test_model_config_reaches_only_its_model(finished):
    root, out = finished
    configs = {name: json.loads((out / "runs" / name / "config.json").read_text())
               for name in ("alexnet", "alexnet_rnn")}
    assert (configs["alexnet"]["optimizer"], configs["alexnet"]["lr"], configs["alexnet"]["l2"]) == (
        "sgd", 0.01, 1e-4)  # TrainConfig's defaults
    assert (configs["alexnet_rnn"]["optimizer"], configs["alexnet_rnn"]["lr"], configs["alexnet_rnn"]["l2"]) == (
        "adam", 0.002, 0.0)  # its file, with the experiment's epochs/size/input over it
    assert (configs["alexnet_rnn"]["epochs"], configs["alexnet_rnn"]["image_size"]) == (2, 40)
    assert configs["alexnet_rnn"]["input"] == "rgb+wavelet"
    text = (out / "REPORT.md").read_text()
    assert f"alexnet_rnn config `{root / 'rnn.json'}`" in text
    assert "optimizer sgd (lr 0.01), L2 0.0001, dropout" in text  # the setup line gives alexnet's
    assert "(but see the models line); augmentation" in text
    saved = experiment.ExperimentConfig.load(out / "experiment.json")[0]
    assert saved.model_config == {"alexnet_rnn": str(root / "rnn.json")}  # --resume keeps it


def test_model_config_over_the_config_file_and_under_per_model_flags(tmp_path):
    from tfdeepfake.config import TrainConfig

    TrainConfig(model="all", optimizer="adamw", weight_decay=0.5, l2=0.0).save(tmp_path / "all.json")
    TrainConfig(model="all", optimizer="adam", l2=5e-4, input="rgb+highpass").save(tmp_path / "own.json")
    cfg = experiment.ExperimentConfig(models=["resnet18", "alexnet"], train_config=str(tmp_path / "all.json"),
                                      model_config={"alexnet": str(tmp_path / "own.json")},
                                      model_input={"alexnet": "rgb+wavelet"}, out=str(tmp_path / "o"))
    member = {m: experiment.base_train_config(cfg, m).validate() for m in cfg.resolved_models()}
    assert (member["resnet18"].optimizer, member["resnet18"].weight_decay) == ("adamw", 0.5)
    assert (member["alexnet"].optimizer, member["alexnet"].l2, member["alexnet"].weight_decay) == ("adam", 5e-4, None)
    assert member["alexnet"].input == "rgb+wavelet"  # --model-input over the file's input
    assert member["alexnet"].out == str(tmp_path / "o" / "runs" / "alexnet")  # the experiment's layout


def test_model_input_reaches_only_its_model_and_the_ensemble_takes_raw_images(finished):
    from tfdeepfake.runs import load_model

    root, out = finished
    inputs = {name: json.loads((out / "runs" / name / "config.json").read_text())["input"]
              for name in ("alexnet", "alexnet_rnn")}
    assert inputs == {"alexnet": "rgb", "alexnet_rnn": "rgb+wavelet"}
    text = (out / "REPORT.md").read_text()
    assert "alexnet_rnn input rgb+wavelet" in text and "input rgb (but see the models line)" in text
    assert json.loads((out / "experiment.json").read_text())["model_input"] == {"alexnet_rnn": "rgb+wavelet"}
    # each member applies its own input inside its model: one Haar layer in the ensemble, the input stays RGB
    ensemble = load_model(out / "runs" / "ensemble-experiment" / "model.keras")
    haar = [layer for layer in ensemble._flatten_layers() if type(layer).__name__ == "HaarWavelet"]
    assert len(haar) == 1 and ensemble.input_shape[-1] == 3


@pytest.mark.parametrize("entry", ["alexnet", "lenet=rgb", "alexnet=rgb+dct", "alexnet=3"])
def test_bad_model_input_exits_2(tmp_path, capsys, entry):
    with pytest.raises(SystemExit) as exc:
        experiment.main(["--model-input", entry, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert "MODEL=INPUT" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("entry", ["resnet18", "lenet=3", "resnet18=0", "vit=x"])
def test_bad_model_epochs_exit_2(tmp_path, capsys, entry):
    with pytest.raises(SystemExit) as exc:
        experiment.main(["--model-epochs", entry, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "--model-epochs" in capsys.readouterr().err


@pytest.mark.parametrize("flag, entry", [("--model-epochs", "vit=48"), ("--model-image-size", "vit=48"),
                                         ("--model-input", "vit=rgb+highpass"),
                                         ("--model-config", "vit=configs/recipe-64.json")])
def test_per_model_values_for_an_untrained_model_are_refused(tmp_path, capsys, flag, entry):
    with pytest.raises(SystemExit) as exc:
        experiment.main(["--models", "alexnet", flag, entry, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert "vit" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_model_options_reach_only_their_model_over_the_config_file(tmp_path):
    from tfdeepfake.config import TrainConfig

    base = tmp_path / "recipe.json"
    TrainConfig(model="all", model_options={"stem_stride": 1, "batch_norm": True}).save(base)
    argv = ["--models", "resnet18", "densenet121", "vgg13", "--config", str(base), "--out", str(tmp_path / "o"),
            "--model-option", "resnet18:stem_pool=false", "--model-option", "resnet18:stem_stride=2"]
    args = experiment.build_parser().parse_args(argv)
    cfg = experiment.ExperimentConfig(models=args.models, train_config=str(base), out=str(tmp_path / "o"),
                                      model_options=experiment.per_model_options(args.model_options))
    assert cfg.model_options == {"resnet18": {"stem_pool": False, "stem_stride": 2}}  # a later KEY wins
    options = {m: experiment.base_train_config(cfg, m).validate().model_options for m in cfg.resolved_models()}
    assert options == {"resnet18": {"stem_stride": 2, "stem_pool": False},  # over the file's stem_stride=1
                       "densenet121": {"stem_stride": 1}, "vgg13": {"batch_norm": True}}
    saved = tmp_path / "experiment.json"
    saved.write_text(json.dumps({**dataclasses.asdict(cfg), "command": "x"}))
    assert experiment.ExperimentConfig.load(saved)[0].model_options == cfg.model_options  # --resume keeps them
    assert report.models_setup(cfg, cfg.resolved_models()) == (  # the report's setup line names them
        "models: resnet18, densenet121, vgg13; image size 64 px; resnet18 options stem_pool=false, stem_stride=2")


@pytest.mark.parametrize("entry, says", [("resnet18=stem_pool=false", "MODEL:KEY=VALUE"),
                                         ("lenet:x=1", "MODEL:KEY=VALUE"), ("resnet18:=1", "KEY=VALUE"),
                                         ("alexnet:stem_pool=false", "stem_pool"),
                                         ("vit:patch_size=big", "patch_size")])
def test_bad_model_options_exit_2_before_training(tmp_path, capsys, entry, says):
    with pytest.raises(SystemExit) as exc:
        experiment.main(["--models", "alexnet", "vit", "--model-option", entry, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "o" / "runs").exists()


@pytest.mark.parametrize("entry, says", [("alexnet", "MODEL=FILE"), ("alexnet=", "FILE is empty"),
                                         ("alexnet=no-such.json", "no-such.json")])
def test_bad_model_config_exits_2_before_training(tmp_path, capsys, entry, says):
    with pytest.raises(SystemExit) as exc:
        experiment.main(["--models", "alexnet", "--model-config", entry, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "o" / "runs").exists()


def test_unknown_model_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        experiment.main(["--models", "lenet", "--out", str(tmp_path)])
    assert exc.value.code == 2


def test_resume_keeps_finished_members_and_trains_the_rest(tmp_path, monkeypatch, capsys):
    from conftest import write_tiny_images

    for label, fake in (("real", False), ("fake", True)):
        write_tiny_images(tmp_path / "data" / label, 8, fake=fake, seed=3, prefix=label)
    out = tmp_path / "out"
    argv = ["--data", str(tmp_path / "data"), "--models", "alexnet_rnn", "alexnet", "--image-size", "32",
            "--epochs", "1", "--batch-size", "8", "--ensemble-size", "2", "--robustness-images", "0",
            "--budget-minutes", "30", "--out", str(out)]
    real_train, trained = experiment.train, []

    def killed_at_the_second(config, log):  # the process dies while the second member trains
        if trained:
            raise RuntimeError("killed")
        trained.append(config.model)
        return real_train(config, log=log)

    monkeypatch.setattr(experiment, "train", killed_at_the_second)
    with pytest.raises(RuntimeError, match="killed"):
        experiment.main(argv)
    first = out / "runs" / "alexnet_rnn"
    kept = (first / "model.keras").read_bytes()
    assert experiment.member_state(first)[0] == "finished"
    assert experiment.member_state(out / "runs" / "alexnet") == ("new", 0.0)
    # A member killed before its first epoch ended: its run folder holds only its config.
    cfg, command = experiment.ExperimentConfig.load(out / "experiment.json")
    assert command.startswith("python -m tfdeepfake.experiment --data")
    (out / "runs" / "alexnet").mkdir()
    experiment.base_train_config(cfg, "alexnet").save(out / "runs" / "alexnet" / "config.json")
    assert experiment.member_state(out / "runs" / "alexnet") == ("partial", 0.0)

    monkeypatch.setattr(experiment, "train", real_train)
    for extra, expected in ((["--epochs", "3"], "--epochs"), ([], "")):
        if expected:
            with pytest.raises(SystemExit) as exc:
                experiment.main(["--resume", "--out", str(out), *extra])
            assert exc.value.code == 2 and expected in capsys.readouterr().err
    capsys.readouterr()
    assert experiment.main(["--resume", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "alexnet_rnn: finished run kept" in printed and "alexnet: continuing its run from epoch 1" in printed
    assert (first / "model.keras").read_bytes() == kept  # not trained again
    assert experiment.member_state(out / "runs" / "alexnet")[0] == "finished"
    report = (out / "REPORT.md").read_text()
    assert "python -m tfdeepfake.experiment --data" in report and "# resumed with:" in report

    with pytest.raises(SystemExit) as exc:
        experiment.main(["--resume", "--out", str(tmp_path / "data")])
    assert exc.value.code == 2 and "experiment.json not found" in capsys.readouterr().err

"""Checks before work starts (#15): the shared validators (``tfdeepfake.cli``) and config validation
raise only their documented error on any input (Hypothesis), and each CLI case of the issue is one line
on stderr, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfdeepfake import cli
from tfdeepfake.config import TrainConfig

FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=120, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), json_values, max_size=8))
def test_any_config_dict_is_a_config_or_a_value_error(values):
    try:
        config = TrainConfig.from_dict(values)
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    # What passes is usable as it stands.
    assert config.batch_size >= 1 and config.lr > 0 and math.isfinite(config.lr)
    assert config.val_fraction + config.test_fraction < 1


@settings(max_examples=80, deadline=None)
@given(st.one_of(json_values, st.lists(json_values)))
def test_any_json_document_as_config_file(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_text(json.dumps(document))
    try:
        TrainConfig.load(path)
    except ValueError:  # never a TypeError/KeyError/AttributeError
        pass


def test_issue_cases_name_the_field_and_value():
    with pytest.raises(cli.UsageError, match=r"config field 'lr': got 'fast', expected a number > 0"):
        TrainConfig.from_dict({"lr": "fast"})
    with pytest.raises(cli.UsageError, match=r"0\.6 \+ 0\.5 = 1\.1"):
        TrainConfig(val_fraction=0.6, test_fraction=0.5).validate()
    with pytest.raises(cli.UsageError, match="batch_size"):
        TrainConfig(batch_size=True).validate()  # a bool is not a number here


path_texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", ".", "..", "/", "/proc/x.csv", "/proc", "/dev/null", "/nonexistent/a/b",
                     "\x00", "a\x00b", "~", "~/x", "/etc/passwd", "/etc/passwd/x", "x" * 300]),
    st.builds(lambda parts: "/".join(parts), st.lists(st.text(min_size=1, max_size=8), max_size=4)),
)
path_values = st.one_of(path_texts, st.none(), st.integers(), st.floats(), st.lists(st.text(max_size=3)))
checkers = st.sampled_from([cli.output_file, cli.output_dir, cli.input_dir, cli.input_path])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(checker=checkers, value=path_values)
def test_path_checks_raise_only_usage_errors(tmp_path, monkeypatch, checker, value):
    monkeypatch.chdir(tmp_path)  # relative paths land in a scratch folder
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        result = checker("--flag", value)
    except cli.UsageError as exc:
        assert str(exc).startswith("--flag: got ") and "expected" in str(exc)
    else:
        assert result is None or isinstance(result, Path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # a check never leaves a file


@settings(max_examples=150, deadline=None)
@given(value=json_values, low=st.none() | st.floats(-10, 10), high=st.none() | st.floats(-10, 10),
       integer=st.booleans(), optional=st.booleans())
def test_number_check_raises_only_usage_errors(value, low, high, integer, optional):
    try:
        assert cli.number("x", value, low=low, high=high, integer=integer, optional=optional) is value
    except cli.UsageError as exc:
        assert str(exc).startswith("x: got ")
        return
    if value is not None:
        assert not isinstance(value, bool) and math.isfinite(value)
        assert (low is None or value >= low) and (high is None or value <= high)


def test_path_checks_on_the_issue_cases(tmp_path):
    existing = tmp_path / "file.txt"
    existing.write_text("x")
    for checker, value, expected in [
        (cli.output_file, tmp_path, "not a folder"),
        (cli.output_file, "/proc/x.csv", "writable"),
        (cli.output_dir, existing, "not a file"),
        (cli.output_file, existing / "sub.csv", "is a file"),
        (cli.input_dir, tmp_path / "missing", "not found"),
        (cli.input_dir, existing, "not a file"),
    ]:
        with pytest.raises(cli.UsageError, match=expected):
            checker("--x", str(value))
    assert cli.output_file("--x", str(tmp_path / "new" / "deeper" / "out.csv")) is not None
    assert not (tmp_path / "new").exists()  # checked, not created


# ------------------------------------------------------------------------------------------------
# Each CLI case of the issue: one line on stderr naming the flag, exit 2, before any work.
# ------------------------------------------------------------------------------------------------

def _exit_2(main, argv, capsys, *expected: str) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    lines = [line for line in err.splitlines() if "error:" in line]  # argparse adds a usage text
    assert "Traceback" not in err and len(lines) == 1, err
    for text in expected:
        assert text in lines[0], (text, err)
    return lines[0]


@pytest.fixture
def files(tmp_path):
    existing = tmp_path / "existing.txt"
    existing.write_text("x")
    model = tmp_path / "m.keras"  # never loaded: every check comes first
    model.write_text("not a model")
    (tmp_path / "data" / "real").mkdir(parents=True)
    (tmp_path / "data" / "fake").mkdir(parents=True)
    return {"dir": tmp_path, "file": existing, "model": model, "data": tmp_path / "data",
            "missing": tmp_path / "missing"}


def test_predict_checks_outputs_before_scoring(files, capsys):
    from tfdeepfake.predict import main

    m, d = files["model"], files["dir"]
    _exit_2(main, [m, d, "--csv", d], capsys, "--csv", "not a folder")
    _exit_2(main, [m, d, "--csv", "/proc/x.csv"], capsys, "--csv", "writable")
    _exit_2(main, [m, d, "--json", d], capsys, "--json")
    _exit_2(main, [m, d, "--explain", files["file"]], capsys, "--explain", "not a file")
    _exit_2(main, [m, d, "--threshold", "nan"], capsys, "--threshold")
    _exit_2(main, [files["missing"], d], capsys, "MODEL", "not found")


def test_evaluate_checks_everything_before_loading(files, tiny_dataset, capsys):
    from tfdeepfake.evaluate import main

    m, data = files["model"], tiny_dataset(2)
    _exit_2(main, [m, "--data", data, "--out", files["dir"]], capsys, "--out", "not a folder")
    for bad in ("5", "nan", "-0.1"):
        _exit_2(main, [m, "--data", data, "--threshold", bad], capsys, "--threshold")
    _exit_2(main, [m, "--data", files["missing"]], capsys, "--data", "not found")
    # a corrupt model file, alone or as a run folder's model.keras, is named as such
    _exit_2(main, [m, "--data", data], capsys, "not a Keras model file")
    run = files["dir"] / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"PK\x03\x04 truncated zip")
    err = _exit_2(main, [run, "--data", data], capsys, "not a Keras model file")
    assert "File not found" not in err


def test_train_checks_everything_before_the_run_folder(files, tiny_dataset, capsys):
    from tfdeepfake.train import main

    d = files["dir"]
    _exit_2(main, ["--model", "alexnet", "--out", files["file"]], capsys, "--out", "not a file")
    config = d / "fast.json"
    config.write_text(json.dumps({"lr": "fast"}))
    _exit_2(main, ["--config", config], capsys, "'lr': got 'fast'", "a number > 0")
    _exit_2(main, ["--val-fraction", "0.6", "--test-fraction", "0.5"], capsys, "= 1.1")
    out = d / "run"
    _exit_2(main, ["--model", "alexnet", "--data", tiny_dataset(4), "--test-data", files["missing"],
                   "--out", out], capsys, "--test-data", "not found")
    _exit_2(main, ["--model", "alexnet", "--data", files["data"], "--out", out], capsys, str(files["data"]))
    assert not out.exists()  # a run that fails its data checks leaves no folder
    with pytest.raises(cli.UsageError):  # --debug: the exception itself, with its traceback
        main(["--model", "alexnet", "--out", str(files["file"]), "--debug"])


def test_resume_refuses_ignored_flags_and_finished_runs(files, capsys):
    from tfdeepfake.train import main

    run = files["dir"] / "run"
    run.mkdir()
    TrainConfig(model="alexnet", out=str(run)).save(run / "config.json")
    _exit_2(main, ["--resume", "--out", run, "--data", files["data"], "--lr", "0.1"], capsys,
            "--data", "--lr", "ignored")
    _exit_2(main, ["--resume", "--out", run, "--model", "vgg13"], capsys, "--model", "alexnet")
    (run / "history.csv").write_text("epoch,loss,val_loss\n0,1,1\n1,1,0.9\n2,1,0.8\n")
    (run / "metrics.json").write_text(json.dumps({"epochs_run": 3}))
    _exit_2(main, ["--resume", "--out", run], capsys, "finished run (3 epochs", "N > 3")
    _exit_2(main, ["--resume", "--out", run, "--epochs", "5"], capsys, "cannot be extended")
    _exit_2(main, ["--resume", "--out", files["missing"]], capsys, "--out", "not found")


def test_other_clis_check_their_flags_first(files, capsys):
    from tfdeepfake import ensemble, experiment, explain, export, serve, tune

    d, f, m, missing = files["dir"], files["file"], files["model"], files["missing"]
    _exit_2(explain.main, [m, f, "--out", d], capsys, "--out", "not a folder")
    _exit_2(explain.main, [m, missing, "--out", d / "x.png"], capsys, "IMAGE", "not found")
    _exit_2(ensemble.main, [m, m, "--name", "e", "--root", f], capsys, "--root", "not a file")
    _exit_2(ensemble.main, [m, m, "--name", "e", "--weights", "1,nan"], capsys, "--weights")
    _exit_2(ensemble.main, [m, m, "--name", "a/b"], capsys, "--name")
    _exit_2(export.main, [m, "--name", "e", "--root", f], capsys, "--root", "not a file")
    _exit_2(export.main, [m, "--name", "e", "--threshold", "5"], capsys, "--threshold")
    _exit_2(serve.main, ["--model-dir", missing], capsys, "--model-dir", "not found")
    _exit_2(serve.main, ["--model-dir", d, "--port", "99999"], capsys, "--port")
    _exit_2(serve.main, ["--model-dir", d, "--max-batch-size", "0"], capsys, "--max-batch-size")
    _exit_2(tune.main, ["--model", "alexnet", "--data", missing], capsys, "--data", "not found")
    _exit_2(tune.main, ["--model", "alexnet", "--out", f], capsys, "--out", "not a file")
    _exit_2(experiment.main, ["--out", d / "e", "--cross-data", missing], capsys, "--cross-data")
    _exit_2(experiment.main, ["--out", f], capsys, "--out", "not a file")
    assert not (d / "e").exists()
    (d / "old" / "runs" / "alexnet").mkdir(parents=True)  # an earlier experiment's run
    (d / "old" / "runs" / "alexnet" / "model.keras").write_text("x")
    _exit_2(experiment.main, ["--out", d / "old", "--models", "alexnet"], capsys, "holds a run")

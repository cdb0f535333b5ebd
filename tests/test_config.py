"""The run configuration dataclass."""

import json
from pathlib import Path

import pytest

from tfdeepfake.config import TrainConfig


def test_roundtrip_with_versions(tmp_path):
    c = TrainConfig(model="resnet18", data="x", image_size=64, l2=0.001)
    path = c.save(tmp_path / "config.json")
    saved = json.loads(path.read_text())
    assert saved["versions"]["tensorflow"] and saved["versions"]["keras"]
    assert TrainConfig.load(path) == c


def test_default_image_size_depends_on_data():
    assert TrainConfig(data=None).resolved_image_size == 64
    assert TrainConfig(data="d").resolved_image_size == 224
    assert TrainConfig(data="d", image_size=96).resolved_image_size == 96


@pytest.mark.parametrize(("field", "value"), [("optimizer", "rmsprop"), ("dropout", 1.0), ("l2", -1.0),
                                               ("precision", "float16"), ("lr", 0.0),
                                               ("monitor", "val_auc"), ("keep_weights", "first"),
                                               ("max_per_class", 0), ("max_per_class", 2.5)])
def test_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value}).validate()


def test_unknown_field_rejected():
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.from_dict({"bogus": 1})


def test_image_size_below_every_models_minimum_rejected():
    from tfdeepfake.models.common import MIN_IMAGE_SIZE

    with pytest.raises(ValueError, match="image_size"):
        TrainConfig(image_size=MIN_IMAGE_SIZE - 1).validate()
    assert TrainConfig(image_size=MIN_IMAGE_SIZE).validate().image_size == MIN_IMAGE_SIZE


def test_model_options_checked_against_the_builders_declared_options():
    assert TrainConfig(model="vit", model_options={"size": "small", "patch_size": 8}).validate()
    with pytest.raises(ValueError, match="'bogus'.*size, patch_size"):
        TrainConfig(model="vit", model_options={"bogus": 1}).validate()
    with pytest.raises(ValueError, match="patch_size"):
        TrainConfig(model="vit", model_options={"patch_size": "eight"}).validate()
    with pytest.raises(ValueError, match="size"):
        TrainConfig(model="alexnet", model_options={"size": "small"}).validate()
    with pytest.raises(ValueError, match="model"):
        TrainConfig(model="no_such_net").validate()
    # "all": each key must be declared by some model; each model gets only its own
    every = TrainConfig(model="all", model_options={"size": "small", "batch_norm": True}).validate()
    assert every.for_model("vit").model_options == {"size": "small"}
    assert every.for_model("vgg13").model_options == {"batch_norm": True}
    assert every.for_model("alexnet").model_options == {}
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig(model="all", model_options={"bogus": 1}).validate()


def test_old_config_with_vit_size_still_loads(tmp_path):
    old = {"model": "vit", "vit_size": "small", "lr": 0.01, "versions": {}}
    (tmp_path / "vit.json").write_text(json.dumps(old))
    assert TrainConfig.load(tmp_path / "vit.json").model_options == {"size": "small"}
    (tmp_path / "alexnet.json").write_text(json.dumps({**old, "model": "alexnet"}))
    assert TrainConfig.load(tmp_path / "alexnet.json").model_options == {}


def test_shipped_configs_load_and_the_flip_recipe_only_adds_flip_averaging():
    """The README's commands pass configs/*.json to train/experiment: each must load as a TrainConfig, and
    recipe-64-flip.json (the Results experiment) must be recipe-64.json plus test-time flip averaging."""
    folder = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(folder.glob("*.json"))
    assert {f.name for f in files} >= {"original.json", "recipe-64.json", "recipe-64-flip.json"}
    for f in files:
        TrainConfig.load(f)
    plain, flip = (json.loads((folder / n).read_text()) for n in ("recipe-64.json", "recipe-64-flip.json"))
    assert (plain.pop("tta_flip"), flip.pop("tta_flip")) == (False, True)
    assert plain == flip
    assert TrainConfig.load(folder / "recipe-64-flip.json").tta_flip is True

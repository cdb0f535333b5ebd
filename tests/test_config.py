"""The run configuration dataclass."""

import json

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
                                               ("precision", "float16"), ("lr", 0.0)])
def test_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value}).validate()


def test_unknown_field_rejected():
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.from_dict({"bogus": 1})

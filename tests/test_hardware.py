"""``tfdeepfake.hardware``: CPU flag detection and ``--precision auto``."""

from __future__ import annotations

import pytest

from tfdeepfake import hardware

ZEN4 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
        "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n\nprocessor\t: 1\n")
SKYLAKE = "model name\t: Intel Xeon\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
SAPPHIRE = "flags\t\t: avx512f amx_tile amx_int8 amx_bf16\n"
GRAVITON3 = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize(("cpuinfo", "expected"), [
    (ZEN4, "mixed_bfloat16"), (SAPPHIRE, "mixed_bfloat16"), (GRAVITON3, "mixed_bfloat16"),
    (SKYLAKE, "float32"), ("", "float32"),
])
def test_auto_follows_native_bf16(cpuinfo, expected):
    flags = hardware.cpu_flags(cpuinfo)
    assert hardware.resolve_precision("auto", flags) == expected
    assert hardware.has_native_bf16(flags) is (expected == "mixed_bfloat16")


def test_cpu_flags_parses_first_flags_line():
    assert hardware.cpu_flags(ZEN4) == {"fpu", "sse2", "avx2", "avx512f", "avx512bw", "avx512_bf16",
                                        "avx512_vnni"}
    assert hardware.cpu_flags("model name: x\n") == frozenset()


@pytest.mark.parametrize("value", hardware.PRECISIONS)
def test_explicit_precisions_pass_through(value):
    assert hardware.resolve_precision(value, flags=()) == value
    assert hardware.resolve_precision(value, flags={"avx512_bf16"}) == value


@pytest.mark.parametrize("value", ["bf16", "float16", "", "AUTO", None])
def test_invalid_precision(value):
    with pytest.raises(ValueError, match="precision"):
        hardware.resolve_precision(value)


def test_this_machine(tmp_path, monkeypatch):
    """Reads /proc/cpuinfo when no flags are given; an unreadable file means float32."""
    assert hardware.resolve_precision("auto") in ("mixed_bfloat16", "float32")
    monkeypatch.setattr(hardware, "_CPUINFO", tmp_path / "missing")
    assert hardware.cpu_flags() == frozenset()
    assert hardware.resolve_precision("auto") == "float32"
    (tmp_path / "cpuinfo").write_text(ZEN4)
    monkeypatch.setattr(hardware, "_CPUINFO", tmp_path / "cpuinfo")
    assert hardware.resolve_precision("auto") == "mixed_bfloat16"


def test_inference_env_is_set_before_tensorflow_only(monkeypatch):
    """Serve/predict processes get TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1 unless the user set it; once
    TensorFlow is imported it is too late and nothing is changed."""
    import os
    import subprocess
    import sys

    code = ("import os, sys; from tfdeepfake.hardware import set_inference_env; "
            "ok = set_inference_env(); print(ok, os.environ.get('TF_ONEDNN_ASSUME_FROZEN_WEIGHTS'))")
    env = {k: v for k, v in os.environ.items() if k != "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "1"]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": "0"}).stdout.split()
    assert out == ["True", "0"]  # the user's own setting wins
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    monkeypatch.delenv("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", raising=False)
    assert hardware.set_inference_env() is False
    assert "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS" not in os.environ


def test_precision_policy_is_restored_even_on_error():
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"
    with hardware.precision_policy("mixed_bfloat16") as name:
        assert name == keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(RuntimeError), hardware.precision_policy("mixed_bfloat16"):
        raise RuntimeError("training failed")
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(ValueError, match="precision"), hardware.precision_policy("fp8"):
        pass
    assert keras.mixed_precision.global_policy().name == "float32"

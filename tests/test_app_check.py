"""`python app.py --check` and the missing-model messages a user sees."""
import subprocess
import sys
from pathlib import Path

import pytest

import assets

ROOT = Path(__file__).resolve().parents[1]


def app(*args, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_check_reports_every_default_component_found():
    r = app("--check")
    assert r.returncode == 0, r.stdout + r.stderr
    names = [c.name for c in assets.components()]
    lines = r.stdout.splitlines()
    for name in names:
        row = next(l for l in lines if l.startswith(name))
        assert row.rstrip().endswith("found"), row
    assert f"{len(names)}/{len(names)} components found" in r.stdout


def test_a_bad_config_stops_the_app_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("vad:\n  threshold: 2\n")
    r = app("--config", str(bad), "--check")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "vad.threshold" in r.stderr


def test_missing_models_say_which_package_to_install():
    with pytest.raises(assets.MissingAsset, match="pip install some-model-package"):
        assets.package_dir("no_such_model_module", "some-model-package", "Some model")
    with pytest.raises(assets.MissingAsset, match="tiny.en or base"):
        assets.whisper_dir("large-v9")
    with pytest.raises(assets.MissingAsset, match="en_US-joe-medium"):
        assets.piper_voice("de_DE-nobody")


def test_bundled_files_resolve_to_real_files():
    assert (assets.whisper_dir() / "model.bin").stat().st_size > 10_000_000
    onnx, conf = assets.piper_voice()
    assert onnx.stat().st_size > 10_000_000 and conf.suffix == ".json"
    assert assets.landmarks_68().stat().st_size > 50_000_000
    gguf = assets.gemma_gguf()
    assert gguf.read_bytes()[:4] == b"GGUF"
    assert assets.default_portrait().shape == (512, 512, 3)

"""Checking a Live Avatar checkpoint from headers alone, on a full-size directory of sparse files.

The expected tensors (computed from config.json) must equal the list the reference code
builds (tests/fixtures/liveavatar, see tools/liveavatar_keys.py); the directory carries
those names and shapes with no tensor data (tests/liveavatar_sparse.py).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import liveavatar_sparse as sparse
import pytest

from avatar_engine.causal_dit import liveavatar_files as la
from liveavatar_sparse import ROOT, write_sparse_safetensors


@pytest.fixture(scope="module")
def reference():
    return sparse.reference()


@pytest.fixture
def checkpoint(tmp_path, reference):
    return sparse.build_checkpoint(tmp_path, reference)


def shard_of(base: Path, key: str) -> Path:
    return base / json.loads((base / la.INDEX).read_text())["weight_map"][key]


def rewrite(path: Path, edit) -> None:
    tensors = {k: t.shape for k, t in la.safetensors_header(path).items()}
    write_sparse_safetensors(path, edit(tensors))


def line(lines, name: str) -> la.FileCheck:
    return next(c for c in lines if c.name.startswith(name))


# ── the expected tensors are the reference's ──────────────────────────────────────────


def test_expected_tensors_equal_the_reference_list(reference):
    transformer = la.transformer_tensors(reference["config"])
    assert transformer == reference["transformer"]
    assert la.lora_tensors(transformer) == reference["lora"]
    assert la.vae_tensors() == reference["vae"] and la.t5_tensors() == reference["t5"]
    # the published figures: 1,260 tensors / 16.30 B; 448 LoRA layers / 676 M; VAE 126.9 M
    assert len(transformer) == 1260 and round(la.parameters(transformer) / 1e7) == 1630
    assert len(la.lora_targets(transformer)) == 448 and round(la.parameters(reference["lora"]) / 1e6) == 676
    assert round(la.parameters(reference["vae"]) / 1e5) == 1269
    # 40 × (q, k, v, o of self and cross attention, ffn.0, ffn.2) + 12 audio injectors × 4
    assert sum(".injector." in k for k in la.lora_targets(transformer)) == 48


def test_config_json_drives_the_expectation(reference):
    fewer = la.transformer_tensors(reference["config"] | {"num_layers": 39, "audio_inject_layers": [0, 4]})
    assert "blocks.39.ffn.0.weight" not in fewer and "audio_injector.injector.2.q.weight" not in fewer
    # what from_pretrained does with a silent config.json: the __init__ defaults (dim 2048)
    assert la.transformer_tensors({})["blocks.0.self_attn.q.weight"] == (2048, 2048)


# ── the directory check ───────────────────────────────────────────────────────────────


def test_full_size_sparse_directory_matches_every_tensor(checkpoint):
    base, lora = checkpoint
    on_disk = sum(p.stat().st_blocks * 512 for p in base.rglob("*") if p.is_file())
    apparent = sum(p.stat().st_size for p in base.glob("*.safetensors"))
    assert apparent > 32e9 and on_disk < 50e6          # full size, no data written
    lines = la.check_liveavatar(base, lora)
    assert all(c.ok for c in lines), "\n".join(c.line() for c in lines)
    names = [c.name for c in lines]
    assert names[:2] == [la.CONFIG, la.INDEX] and sum(n.endswith(".safetensors") for n in names) == 5
    assert "1260/1260 tensors matched" in line(lines, "transformer").detail
    assert "rank 128" in line(lines, "liveavatar").detail and "448 layers" in line(lines, "liveavatar").detail
    assert la.verdict(lines).startswith("verdict: OK")


def test_a_renamed_and_a_reshaped_tensor_are_named(checkpoint):
    base, lora = checkpoint
    renamed, reshaped = "blocks.7.cross_attn.k.weight", "blocks.30.ffn.2.weight"
    rewrite(shard_of(base, renamed), lambda t: {("blocks.7.cross_attn.key.weight" if k == renamed else k): s
                                                for k, s in t.items()})
    rewrite(shard_of(base, reshaped), lambda t: t | {reshaped: (5120, 13823)})
    lines = la.check_liveavatar(base, lora)
    report = "\n".join(c.line() for c in lines)
    assert f"1 missing: {renamed}" in line(lines, "transformer").detail, report
    assert "unexpected: blocks.7.cross_attn.key.weight" in line(lines, shard_of(base, renamed).name).detail
    assert f"{reshaped} (5120, 13823) (expected (5120, 13824))" in line(lines, shard_of(base, reshaped).name).detail
    assert la.verdict(lines).startswith("verdict: NOT USABLE")


def test_lora_problems_are_named(checkpoint, reference):
    base, lora = checkpoint
    # names without PEFT's prefix or adapter name are accepted; a wrong rank and a dropped layer are not
    rewrite(lora, lambda t: {k.removeprefix(la.PEFT_PREFIX).replace(".default", ""): s for k, s in t.items()})
    assert la.check_lora(lora, reference["transformer"]).ok
    rewrite(lora, lambda t: {k: s for k, s in t.items() if "blocks.3.ffn.0." not in k})
    check = la.check_lora(lora, reference["transformer"])
    assert not check.ok and "2 missing: base_model.model.blocks.3.ffn.0.lora_A.default.weight" in check.detail
    write_sparse_safetensors(lora, la.lora_tensors(reference["transformer"], rank=64))
    assert "rank 64, Live Avatar's is 128" in la.check_lora(lora, reference["transformer"]).detail


def test_missing_truncated_and_damaged_files_are_one_line_each(checkpoint):
    base, lora = checkpoint
    (base / la.VAE).unlink()
    shard = shard_of(base, "blocks.0.modulation")
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size - 1)
    (base / la.T5).write_bytes(b"not a zip")
    shutil.rmtree(base / la.WAV2VEC2)
    lines = la.check_liveavatar(base, lora)
    assert line(lines, la.VAE).detail.startswith("missing")
    assert "truncated" in line(lines, shard.name).detail
    assert "not a torch state dict" in line(lines, la.T5).detail
    assert line(lines, la.WAV2VEC2).detail.startswith("missing")
    assert all("\n" not in c.line() for c in lines)
    assert "unchecked in 1 unreadable shard" in line(lines, "transformer").detail
    assert "5 of 11 checks failed" in la.verdict(lines)
    assert not la.check_liveavatar(base, "")[-4].ok     # no LoRA configured: said so


def test_app_check_reports_the_checkpoint_and_the_plan(checkpoint):
    base, lora = checkpoint
    r = subprocess.run([sys.executable, "app.py", "--check", "--checkpoint", str(base), "--lora", str(lora)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok   transformer (4 shards): 1260/1260 tensors matched" in r.stdout
    assert "verdict: OK" in r.stdout and "rank 0 (steps 0-3 + VAE) 78.6 GiB" in r.stdout


def test_the_cli_prints_one_line_per_file_and_the_verdict(checkpoint):
    base, lora = checkpoint
    r = subprocess.run([sys.executable, "-m", "avatar_engine.causal_dit.liveavatar_files",
                        "--checkpoint", str(base), "--lora", str(lora)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert len(out) == 12 and out[-1].startswith("verdict: OK")     # 11 checks and the verdict
    (base / la.CONFIG).write_text(json.dumps({"dim": 5120}))       # a config.json for another model
    r = subprocess.run([sys.executable, "-m", "avatar_engine.causal_dit.liveavatar_files",
                        "--checkpoint", str(base), "--lora", str(lora)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 1 and "num_layers 32 (Wan2.2-S2V-14B: 40)" in r.stdout

"""avatar.backend causal_dit with the Live Avatar checkpoint: one line, before anything heavy
loads, for a missing file, no GPU, too few GPUs, too little memory or FP8 on an old GPU.

This machine has no GPU, so the no-GPU line is the real one (through app.py); the memory
lines take the GPUs' properties as they would come from torch.cuda.
"""
import subprocess
import sys

import liveavatar_sparse as sparse
import pytest

from avatar_engine.causal_dit import liveavatar_files as la
from avatar_engine.causal_dit.backend import BackendError, open_liveavatar
from avatar_engine.causal_dit.preflight import GPU, PreflightError, preflight, visible_gpus
from config import load_config

H100 = GPU("NVIDIA H100 80GB HBM3", 81559 * 2**20, (9, 0))
A100 = GPU("NVIDIA A100-SXM4-80GB", 81920 * 2**20, (8, 0))
L40S = GPU("NVIDIA L40S", 46068 * 2**20, (8, 9))
RTX6000 = GPU("NVIDIA RTX 6000 Ada Generation", 49140 * 2**20, (8, 9))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return sparse.build_checkpoint(tmp_path_factory.mktemp("liveavatar"), sparse.reference())


def plan_for(checkpoint, gpus, ranks=1, weights="bf16", height=720, width=400):
    base, lora = checkpoint
    return preflight(str(base), str(lora), ranks, weights, height, width, gpus)


def one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def app(*args):
    return subprocess.run([sys.executable, "app.py", *args], capture_output=True, text=True, timeout=120,
                          cwd=sparse.ROOT)


def test_no_gpu_is_one_line_from_the_app(checkpoint, tmp_path):
    assert visible_gpus() == []         # this machine
    base, lora = checkpoint
    r = app("--checkpoint", str(base), "--lora", str(lora), "--headless", "--input", "in.wav",
            "--output", str(tmp_path / "out.mp4"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == ("error: Live Avatar needs CUDA GPUs and torch sees none (torch.cuda.is_available() "
                                "is False); run it on a GPU machine, or use avatar.backend portrait here")


def test_the_tpp_tool_runs_the_same_preflight(checkpoint):
    base, lora = checkpoint
    tpp = [sys.executable, "-m", "avatar_engine.causal_dit.liveavatar_tpp", "--checkpoint", str(base), "--lora", str(lora)]
    r = subprocess.run(tpp, capture_output=True, text=True, timeout=120, cwd=sparse.ROOT)
    assert r.returncode == 2 and r.stderr.startswith("error: Live Avatar needs CUDA GPUs and torch sees none")
    assert r.stderr.count("\n") == 1, r.stderr


def test_a_missing_file_is_named_before_anything_loads(tmp_path):
    base, lora = sparse.build_checkpoint(tmp_path, sparse.reference())
    (base / la.T5).unlink()
    r = app("--checkpoint", str(base), "--lora", str(lora), "--headless", "--input", "in.wav",
            "--output", str(tmp_path / "out.mp4"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"error: Live Avatar checkpoint {base}: {la.T5}: missing in {base}" in r.stderr
    with pytest.raises(PreflightError) as e:
        preflight(str(base), "", 5, "bf16", 720, 400, [H100] * 5)
    assert "(and 1 more; python app.py --check lists them)" in one_line(e)


def test_too_little_memory_names_the_rank_and_the_fix(checkpoint):
    with pytest.raises(PreflightError) as e:
        plan_for(checkpoint, [L40S])
    assert one_line(e) == ("Live Avatar at 720×400 on 1 rank(s), bf16: rank 0 (steps 0-3 + VAE) needs 78.6 GiB "
                           "(weights 31.2 GiB + caches 43.7 GiB + work 3.7 GiB) but GPU 0 (NVIDIA L40S) has 45.0 GiB; "
                           "no setup of these 1 GPU(s) fits 720×400; lower causal_dit.height/width")
    # the advice is the fastest setup that fits: more step ranks first, then bf16 over fp8
    for gpus, ranks, size, advice in (([RTX6000] * 5, 3, (720, 400), "ranks 5 and causal_dit.weights bf16"),
                                      ([L40S] * 5, 3, (720, 400), "ranks 5 and causal_dit.weights fp8"),
                                      ([H100] * 3, 1, (480, 832), "ranks 3 and causal_dit.weights bf16"),
                                      ([H100] * 2, 1, (480, 832), "ranks 2 and causal_dit.weights fp8")):
        with pytest.raises(PreflightError) as e:
            plan_for(checkpoint, gpus, ranks, "bf16", *size)
        assert one_line(e).endswith(f"set causal_dit.{advice}")
    # by the plan one 80 GB H100 holds the whole stream at 720×400 (78.6 of 79.6 GiB)
    assert plan_for(checkpoint, [H100]).per_rank[0].total_bytes < H100.total_bytes


def test_ranks_gpus_fp8_and_size_mismatches(checkpoint):
    with pytest.raises(PreflightError) as e:
        plan_for(checkpoint, [H100] * 2, ranks=5)
    assert one_line(e) == "causal_dit.ranks 5 needs 5 GPUs, torch sees 2; set causal_dit.ranks 1 and causal_dit.weights bf16"
    with pytest.raises(PreflightError) as e:
        plan_for(checkpoint, [A100] * 5, ranks=5, weights="fp8")
    assert "fp8 needs compute capability 8.9+ (Ada, Hopper); NVIDIA A100-SXM4-80GB is 8.0" in one_line(e)
    with pytest.raises(PreflightError) as e:
        plan_for(checkpoint, [H100], height=720, width=410)
    assert one_line(e) == "causal_dit: Live Avatar needs a video size in multiples of 16 pixels, got 720×410"


def test_a_setup_that_fits_goes_on_to_load_in_one_process(checkpoint):
    plan = plan_for(checkpoint, [H100] * 5, ranks=5)
    assert [r.role for r in plan.per_rank] == ["steps 0", "steps 1", "steps 2", "steps 3", "VAE"]
    base, lora = checkpoint
    overrides = {"avatar": {"backend": "causal_dit", "checkpoint": str(base), "lora": str(lora)}}
    cfg = load_config(overrides=overrides | {"causal_dit": {"ranks": 5}})
    with pytest.raises(BackendError) as e:         # the app is one process; TPP is torchrun's
        open_liveavatar(cfg.avatar, cfg.causal_dit, gpus=[H100] * 5)
    assert one_line(e).startswith("the app runs Live Avatar in one process on one GPU (causal_dit.ranks 1, "
                                  "weights bf16), not 5 rank(s) in bf16; across GPUs run torchrun -m")
    cfg = load_config(overrides=overrides)
    with pytest.raises(BackendError) as e:         # past the preflight: the loader wants the GPU it was promised
        open_liveavatar(cfg.avatar, cfg.causal_dit, gpus=[H100])
    assert "asked to run on cuda:0 but torch sees no CUDA GPU" in one_line(e)

"""Live Avatar memory planning against figures checked by hand and the reference's key list."""
import math

import liveavatar_sparse
import pytest

from avatar_engine.causal_dit import liveavatar_files as la
from avatar_engine.causal_dit.sizing import fp8_tensor, liveavatar_plan, liveavatar_tokens, weight_bytes


@pytest.fixture(scope="module")
def reference_tensors():
    return liveavatar_sparse.reference()["transformer"]


def test_parameters_are_the_reference_total(reference_tensors):
    assert liveavatar_plan().params == sum(math.prod(s) for s in reference_tensors.values()) == 16_295_755_609


def test_tokens_and_kv_cache_by_hand():
    # 720×400 → latent 90×50 → 45×25 patches; sink: reference 1125 + FramePack motion
    # 1125 (1 frame, 2×2) + 264 (2 frames → 1, 22×12) + 264 (16 frames → 4, 11×6)
    assert liveavatar_tokens(720, 400) == (1125, 2778) == liveavatar_tokens(400, 720)
    # 480×832 → 60×104 → 30×52 = 1560; sink 1560 + 1560 + 15·26 + 4·7·13
    assert liveavatar_tokens(480, 832) == (1560, 3874)
    p = liveavatar_plan(720, 400)
    assert p.ring_tokens == 13500         # one 12-latent-frame clip, as the reference allocates
    # 40 layers × K and V × 13,500 tokens × 5,120 × 2 bytes ≈ 11.1 GB, the reference's step cache
    assert p.kv_bytes_per_step == 40 * 2 * 13500 * 5120 * 2 == 11_059_200_000
    assert p.sink_bytes == 40 * 2 * 2778 * 5120 * 2


def test_flops_per_block_from_the_tensor_list(reference_tensors):
    """2 FLOPs per weight per token through every Linear a noisy token passes, plus attention."""
    p = liveavatar_plan(720, 400)
    n, context, d = 3 * 1125, 13500 + 2778, 5120
    per_token = [k for k in reference_tensors if k.endswith(".weight") and (
        any(f".self_attn.{x}." in k for x in "qkvo") or any(f".cross_attn.{x}." in k for x in "qo")
        or ".ffn." in k or (k.startswith("audio_injector.injector.") and k.split(".")[3] in "qo"))]
    linear = 2 * n * sum(math.prod(reference_tensors[k]) for k in per_token)
    attention = 40 * 4 * n * d * (context + 512) + 12 * 4 * n * 5 * d
    assert linear + attention == pytest.approx(p.flops_per_forward, rel=2e-3)
    assert 130e12 < p.flops_per_forward < 133e12


def test_steps_spread_over_ranks_as_tpp_owns_them():
    for ranks in range(1, 6):
        rows = liveavatar_plan(720, 400, ranks).per_rank
        assert sum(r.steps for r in rows) == 4
        assert len(rows) == max(ranks, 1) and (ranks == 1 or rows[-1].role == "VAE")
    assert [r.role for r in liveavatar_plan(ranks=3).per_rank] == ["steps 0,2", "steps 1,3", "VAE"]
    one, five = liveavatar_plan(ranks=1), liveavatar_plan(ranks=5)
    assert one.bottleneck_forwards == 4 and five.bottleneck_forwards == 1
    assert five.fps(1e15) == pytest.approx(4 * one.fps(1e15))
    # each step rank holds all 32.6 GB of bf16 weights (+ wav2vec2), a ring per step it owns,
    # one sink and the prompt's K/V (512 tokens)
    step1, text = five.per_rank[1], 40 * 2 * 512 * 5120 * 2
    assert step1.weight_bytes == 2 * five.params + 2 * 315_438_720
    assert step1.cache_bytes == five.kv_bytes_per_step + five.sink_bytes + text
    assert one.per_rank[0].cache_bytes == 4 * five.kv_bytes_per_step + five.sink_bytes + text


def test_fp8_stores_the_block_matmuls_in_one_byte(reference_tensors):
    fp8 = {k: s for k, s in reference_tensors.items() if fp8_tensor(k, s)}
    # 40 blocks × (8 attention + 2 FFN matrices) + 12 audio injectors × 5 (q, k, v, o, AdaLN)
    assert len(fp8) == 40 * 10 + 12 * 5
    n_fp8 = sum(math.prod(s) for s in fp8.values())
    assert 0.96 < n_fp8 / la.parameters(reference_tensors) < 0.98
    assert weight_bytes(reference_tensors, "fp8") == n_fp8 + 4 * len(fp8) + 2 * (la.parameters(reference_tensors) - n_fp8)
    bf16, f8 = liveavatar_plan(weights="bf16"), liveavatar_plan(weights="fp8")
    assert bf16.per_rank[1].total_bytes - f8.per_rank[1].total_bytes == 2 * bf16.params - weight_bytes(reference_tensors, "fp8")


def test_bad_plans_are_refused_with_one_line():
    with pytest.raises(ValueError, match="multiples of 16 pixels, got 720×410"):
        liveavatar_plan(720, 410)
    with pytest.raises(ValueError, match="1 to 5 ranks"):
        liveavatar_plan(ranks=6)
    with pytest.raises(ValueError, match="bf16 or fp8"):
        liveavatar_plan(weights="int4")

"""Live Avatar TPP: 2 gloo step ranks + a Wan VAE rank give bitwise the frames of one process,
across the adaptive-sink swap at clip 1; any step-rank count from 1 to the step count.
(The DiT fixture's random Live Avatar transformer and the tiny Wan2.1 VAE fixture.)"""
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from avatar_engine.causal_dit.liveavatar import LiveAvatarConfig, LiveAvatarStreamer
from avatar_engine.causal_dit.liveavatar_tpp import run_liveavatar_pipeline
from avatar_engine.causal_dit.lora import merge_lora
from avatar_engine.causal_dit.model import CausalDiT, preset
from avatar_engine.causal_dit.wan_vae import LiveAvatarDecodeStream, WanVAE
from avatar_engine.causal_dit.wan_keys import convert_state_dict

FIXTURE = Path(__file__).parent / "fixtures" / "liveavatar" / "dit"
VAE_FIXTURE = FIXTURE.parent / "audio_vae"
N_BLOCKS = 5                      # clip 0 (blocks 0-3), the adaptive sink, block 4 of clip 1
CFG = LiveAvatarConfig(seed=7)


def build():
    torch.manual_seed(0)
    cfg = preset("liveavatar-tiny")
    reference = load_file(FIXTURE / "reference_weights.safetensors")
    merge_lora(reference, load_file(FIXTURE / "lora.safetensors"), 2.0)
    model = CausalDiT(cfg)
    model.load_state_dict(convert_state_dict(reference, cfg), strict=True)
    g = torch.Generator().manual_seed(3)
    inputs = (torch.randn(1, 16, 16, 8, generator=g), torch.randn(1, 19, 16, 16, 8, generator=g),
              torch.randn(1, 5, cfg.text_dim, generator=g))
    return model.eval(), inputs


def wan_decoder(motion):
    """The Wan VAE's stream decoder, warmed on the motion latents: block latents (B, F, C, H, W) → frames."""
    stream = LiveAvatarDecodeStream(WanVAE.load(VAE_FIXTURE))
    stream.warm_up(motion.transpose(1, 2))
    return lambda x0: stream.decode_block(x0.transpose(1, 2))


def block_features(n):
    return torch.randn(1, 12, 25, 16, generator=torch.Generator().manual_seed(100 + n))


def worker(rank, world, rendezvous, out_dir, with_vae):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"     # loopback only
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    model, inputs = build()
    decode = wan_decoder(inputs[1]) if with_vae and rank == world - 1 else None
    out = run_liveavatar_pipeline(LiveAvatarStreamer(model, CFG), *inputs, block_features, N_BLOCKS,
                                  vae_rank=with_vae, decode=decode)
    torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def single_process():
    model, inputs = build()
    streamer = LiveAvatarStreamer(model, CFG)
    latents, video, decode = [], [], wan_decoder(inputs[1])
    with torch.no_grad():
        streamer.reset(*inputs)
        for n in range(N_BLOCKS):
            latents.append(streamer.generate_block(n, streamer.audio(block_features(n))))
            video.append(decode(latents[-1]))
    return latents, video


@pytest.fixture(scope="module")
def one_process():
    before = torch.get_num_threads()
    torch.set_num_threads(1)          # the ranks run one thread each: same kernels, same bits
    try:
        return single_process()
    finally:
        torch.set_num_threads(before)


def spawn(tmp_path, world, with_vae):
    mp.spawn(worker, args=(world, str(tmp_path / f"rendezvous{world}"), str(tmp_path), with_vae), nprocs=world)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]


def test_two_step_ranks_and_a_vae_rank_are_bitwise_one_process(one_process, tmp_path):
    latents, video = one_process
    out = spawn(tmp_path, 3, True)                 # steps 0, 2 | steps 1, 3 | VAE
    assert out[0] == [] and out[1] == []
    assert len(out[2]) == N_BLOCKS and all(torch.equal(a, b) for a, b in zip(out[2], video))
    assert [v.shape[2] for v in video] == [9, 12, 12, 12, 12]          # the Wan stream decoder's frames


@pytest.mark.parametrize("world", [1, 4])
def test_any_step_rank_count_gives_the_same_latents(one_process, tmp_path, world):
    latents, _ = one_process
    out = spawn(tmp_path, world, False)
    holder = (CFG.steps - 1) % world                # the last step's owner
    assert all(out[r] == [] for r in range(world) if r != holder)
    assert len(out[holder]) == N_BLOCKS and all(torch.equal(a, b) for a, b in zip(out[holder], latents))


def test_the_adaptive_sink_changes_clip_1(one_process):
    """The swap is real: without it block 4 differs (and blocks 0-3 do not)."""
    latents, _ = one_process
    model, inputs = build()
    streamer = LiveAvatarStreamer(model, LiveAvatarConfig(seed=7, adaptive_sink=False))
    with torch.no_grad():
        streamer.reset(*inputs)
        plain = [streamer.generate_block(n, streamer.audio(block_features(n))) for n in range(N_BLOCKS)]
    assert all(torch.equal(a, b) for a, b in zip(plain[:4], latents[:4]))
    assert not any(torch.allclose(a, b, atol=1e-3) for a, b in zip(plain[4:], latents[4:]))

"""Pipeline parallelism over 2 gloo ranks gives bitwise the frames of one process."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from avatar_engine.causal_dit.model import CausalDiT, preset
from avatar_engine.causal_dit.stream import CausalStreamer, StreamConfig
from avatar_engine.causal_dit.tpp import run_pipeline
from avatar_engine.causal_dit.vae import ConvCache, StreamingVAE, VAEConfig

N_BLOCKS = 6
CFG = StreamConfig(frames_per_block=2, window=4, steps=3, step_rule="x0_renoise", pin_first_block=True)


def build():
    torch.manual_seed(0)
    model = CausalDiT(preset("tiny")).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.talk_attn.o.weight.normal_(0, 0.2)
    vae = StreamingVAE(VAEConfig(latent_channels=8, width=16)).eval()
    reference = torch.randn(1, 8, 4, 4, generator=torch.Generator().manual_seed(3))
    return model, vae, reference


def block_inputs(n):
    g = torch.Generator().manual_seed(100 + n)
    c = CFG.frames_per_block
    feats = torch.randn(1, c * 4, 1, 384, generator=g)
    return feats, feats.flip(1), torch.rand(1, c, generator=g), torch.rand(1, c, generator=g)


def worker(rank, world, rendezvous, out_dir, with_vae):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"     # loopback only
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    model, vae, reference = build()
    out = run_pipeline(CausalStreamer(model, CFG), reference, block_inputs, N_BLOCKS, vae if with_vae else None)
    torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def single_process():
    model, vae, reference = build()
    streamer = CausalStreamer(model, CFG)
    latents, video, cache = [], [], ConvCache()
    with torch.no_grad():
        streamer.reset(reference)
        for n in range(N_BLOCKS):
            talk, listen = streamer.audio_tokens(*block_inputs(n))
            latents.append(streamer.generate_block(n, talk, listen))
            video.append(vae.decode(latents[-1], cache))
    return latents, video


def test_two_rank_pipeline_is_bitwise_one_process(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)          # the ranks run one thread each: same kernels, same bits
    try:
        latents, video = single_process()
    finally:
        torch.set_num_threads(before)
    mp.spawn(worker, args=(2, str(tmp_path / "rendezvous2"), str(tmp_path), False), nprocs=2)
    # steps 0, 2 on rank 0 and step 1 on rank 1: the last step's owner holds the latents
    piped = torch.load(tmp_path / "rank0.pt")
    assert torch.load(tmp_path / "rank1.pt") == []
    assert len(piped) == N_BLOCKS
    assert all(torch.equal(a, b) for a, b in zip(piped, latents))

    mp.spawn(worker, args=(3, str(tmp_path / "rendezvous3"), str(tmp_path), True), nprocs=3)   # + a VAE rank
    frames = torch.load(tmp_path / "rank2.pt")
    assert len(frames) == N_BLOCKS and all(torch.equal(a, b) for a, b in zip(frames, video))

"""Timestep-forcing pipeline parallelism (TPP) over torch.distributed.

With K denoising steps and R step ranks, rank r owns every step i with i % R == r, and
the per-step KV caches of those steps. Block n's latent (with its audio tokens) travels
owner(0) → owner(1) → … → owner(K−1) by point-to-point send/recv; caches never move. Each
rank works in ticks: at tick τ it runs step i of block τ − i for its steps, so while rank
i works on block n, rank i−1 already works on block n+1 (its step-i cache holds block n's
entry once step i of block n is done). An optional extra rank decodes the VAE.

Same seeds, same per-step caches, same arithmetic: the frames equal a single process
running every step. Launch:

    torchrun --nproc-per-node 2 -m avatar_engine.causal_dit.tpp --preset tiny --blocks 50
"""
from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist

from .stream import CausalStreamer
from .vae import ConvCache, StreamingVAE


def step_owner(step: int, step_ranks: int) -> int:
    return step % step_ranks


def run_pipeline(streamer: CausalStreamer, reference_latent, block_inputs, n_blocks: int,
                 vae: StreamingVAE | None = None):
    """Run this rank's share of generating `n_blocks` blocks.

    block_inputs(n) → (talk_features, listen_features, talk_gate, listen_gate) for block n,
    called on the rank that owns step 0 only. With `vae`, the last rank of the group only
    decodes. Returns the clean latents (B, C, ch, h, w) per block on the rank that owns the
    last step, the decoded video (B, 3, T, H, W) per block on the decode rank, else [].
    """
    cfg = streamer.cfg
    if cfg.cache_mode != "timestep_forcing" or cfg.adaptive_sink:
        raise ValueError("pipeline parallelism needs cache_mode timestep_forcing and adaptive_sink off")
    rank, world = dist.get_rank(), dist.get_world_size()
    step_ranks = world - 1 if vae is not None else world
    if step_ranks < 1:
        raise ValueError("pipeline parallelism with a VAE rank needs at least 2 processes")
    last_step = cfg.steps - 1
    if vae is not None and rank == world - 1:
        return _decode_loop(vae, n_blocks, step_owner(last_step, step_ranks), last_step + 1, streamer, reference_latent)

    streamer.reset(reference_latent)
    batch = reference_latent.shape[0]
    x_shape = (batch, cfg.frames_per_block, streamer.model.cfg.latent_channels, *reference_latent.shape[-2:])
    a_shape = (batch, cfg.frames_per_block, streamer.model.cfg.audio_tokens, streamer.model.cfg.dim)
    sizes = [torch.Size(x_shape).numel(), torch.Size(a_shape).numel(), torch.Size(a_shape).numel()]
    pack = lambda x, t, l: torch.cat([x.flatten(), t.flatten(), l.flatten()])
    unpack = lambda p: [part.reshape(s) for part, s in zip(p.split(sizes), (x_shape, a_shape, a_shape))]

    mine = [i for i in range(cfg.steps) if step_owner(i, step_ranks) == rank]
    local, pending, results = {}, [], []
    for tick in range(n_blocks + last_step):
        for i in mine:
            n = tick - i
            if not 0 <= n < n_blocks:
                continue
            if i == 0:
                talk, listen = streamer.audio_tokens(*block_inputs(n))
                x = streamer.initial_noise(n, batch).to(talk)
            elif step_owner(i - 1, step_ranks) == rank:
                x, talk, listen = local.pop((n, i))
            else:
                buf = torch.empty(sum(sizes), dtype=reference_latent.dtype)
                dist.recv(buf, src=step_owner(i - 1, step_ranks), tag=i)
                x, talk, listen = unpack(buf)
            with torch.no_grad():
                x, _ = streamer.denoise_step(n, i, x, talk, listen)
            if i < last_step:
                nxt = step_owner(i + 1, step_ranks)
                if nxt == rank:
                    local[(n, i + 1)] = (x, talk, listen)
                else:
                    payload = pack(x, talk, listen)
                    pending.append((dist.isend(payload, dst=nxt, tag=i + 1), payload))
            elif vae is not None:
                pending.append((dist.isend(x.contiguous(), dst=world - 1, tag=i + 1), x))
            else:
                results.append(x)
    for request, _ in pending:
        request.wait()
    return results


def _decode_loop(vae, n_blocks, src, tag, streamer, reference_latent):
    cache, frames = ConvCache(), []
    shape = (reference_latent.shape[0], streamer.cfg.frames_per_block, *reference_latent.shape[1:])
    for _ in range(n_blocks):
        x0 = torch.empty(shape, dtype=reference_latent.dtype)
        dist.recv(x0, src=src, tag=tag)
        with torch.no_grad():
            frames.append(vae.decode(x0, cache))
    return frames


def main(argv=None):
    """Throughput of TPP under torchrun (random weights: a timing tool, not an avatar)."""
    from .model import CausalDiT, preset
    from .stream import StreamConfig

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--blocks", type=int, default=50)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--latent", type=int, default=8, help="latent height = width")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CausalDiT(preset(args.preset)).eval()
    cfg = model.cfg
    streamer = CausalStreamer(model, StreamConfig(steps=args.steps))
    reference = torch.randn(1, cfg.latent_channels, args.latent, args.latent)
    frames = streamer.cfg.frames_per_block
    feats = torch.randn(1, frames * cfg.frames_per_latent, cfg.audio_layers, cfg.audio_dim)
    inputs = lambda n: (feats, feats, torch.ones(1, frames), torch.zeros(1, frames))
    dist.barrier()
    start, cpu_start = time.perf_counter(), time.process_time()
    run_pipeline(streamer, reference, inputs, args.blocks)
    cpu = time.process_time() - cpu_start
    dist.barrier()
    elapsed = time.perf_counter() - start
    # wall time is the throughput; CPU time shows how the work split, whatever else runs
    print(f"tpp rank={dist.get_rank()} ranks={dist.get_world_size()} preset={args.preset} blocks={args.blocks} "
          f"wall_ms_per_block={1000 * elapsed / args.blocks:.2f} cpu_ms_per_block={1000 * cpu / args.blocks:.2f}",
          flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

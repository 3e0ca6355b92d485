"""Live Avatar's timestep-forcing pipeline parallelism (causal_s2v_pipeline_tpp.py), for
any number of step ranks from 1 to the number of steps, plus an optional VAE rank.

Step rank r owns every denoising step i with i % R == r and holds only those steps' ring
caches (and one sink). Only the block latent crosses ranks: step i's owner sends it to step
i+1's owner, the last step's owner to the VAE rank. Every rank computes its own audio and
text conditioning from the same inputs, as the reference does. At tick τ a rank runs step
i of block τ − i for its steps, so rank i works on block n while rank i−1 works on n+1.

Adaptive sink, as the reference: the rank holding the clean latents (the VAE rank, else
the last step's owner) keeps block 0's first latent frame; when clip 0 is complete it
broadcasts it, and every step rank prefills its sink again before clip 1. Clip 0 drains
from the pipeline first (one bubble per stream, as the reference's blocking broadcast).

Same seeds (noise per clip, rd per block and step), same per-step caches, same arithmetic:
the latents and frames equal one process running every step.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from .liveavatar import LiveAvatarStreamer
from .tpp import step_owner
from .vae import ConvCache


def run_liveavatar_pipeline(streamer: LiveAvatarStreamer, reference, motion, prompt_states, block_features,
                            n_blocks: int, vae=None):
    """This rank's share of generating `n_blocks` blocks.

    reference (B, C, H, W), motion (B, T, C, H, W), prompt_states (B, S, Dt): the session's
    inputs, on every rank. block_features(n) → wav2vec2 states (B, 4·F, L, Da) of block n.
    With `vae` (decode(latents, cache)), the last rank only decodes. Returns the clean
    latents (B, F, C, H, W) per block on the last step's owner when there is no VAE rank,
    the decoded video per block on the VAE rank, else [].
    """
    cfg = streamer.cfg
    rank, world = dist.get_rank(), dist.get_world_size()
    step_ranks = world - 1 if vae is not None else world
    if not 1 <= step_ranks <= cfg.steps:
        raise ValueError(f"Live Avatar TPP runs 1 to {cfg.steps} step ranks (plus one VAE rank); got {step_ranks}")
    last = cfg.steps - 1
    is_vae = vae is not None and rank == world - 1
    holder = world - 1 if vae is not None else step_owner(last, step_ranks)
    mine = [] if is_vae else [i for i in range(cfg.steps) if step_owner(i, step_ranks) == rank]
    if mine:
        streamer.reset(reference, motion, prompt_states, steps=mine)
    b, c, h, w = reference.shape
    x_shape = (b, cfg.frames_per_block, c, h, w)
    clip0 = min(n_blocks, cfg.blocks_per_clip)
    phases = [(0, clip0), (clip0, n_blocks)] if cfg.adaptive_sink and n_blocks > clip0 else [(0, n_blocks)]
    results, decode_cache, new_reference = [], ConvCache(), None
    for phase, (lo, hi) in enumerate(phases):
        if phase == 1:
            ref = new_reference if rank == holder else torch.empty((b, c, h, w), dtype=reference.dtype, device=reference.device)
            dist.broadcast(ref, src=holder)
            if mine:
                streamer.adopt_reference(ref)
        if is_vae:
            for n in range(lo, hi):
                x0 = torch.empty(x_shape, dtype=reference.dtype, device=reference.device)
                dist.recv(x0, src=step_owner(last, step_ranks), tag=cfg.steps)
                if n == 0:
                    new_reference = x0[:, 0].clone()
                with torch.no_grad():
                    results.append(vae.decode(x0, decode_cache))
            continue
        local, pending = {}, []
        for tick in range(hi - lo + last):
            for i in mine:
                n = lo + tick - i
                if not lo <= n < hi:
                    continue
                if i == 0:
                    x = streamer.clip_noise(n, reference.dtype)
                elif step_owner(i - 1, step_ranks) == rank:
                    x = local.pop((n, i))
                else:
                    x = torch.empty(x_shape, dtype=reference.dtype, device=reference.device)
                    dist.recv(x, src=step_owner(i - 1, step_ranks), tag=i)
                with torch.no_grad():
                    x, _ = streamer.denoise_step(i, n, x, streamer.audio(block_features(n)))
                if i < last:
                    nxt = step_owner(i + 1, step_ranks)
                    if nxt == rank:
                        local[(n, i + 1)] = x
                    else:
                        x = x.contiguous()
                        pending.append((dist.isend(x, dst=nxt, tag=i + 1), x))
                elif vae is not None:
                    x = x.contiguous()
                    pending.append((dist.isend(x, dst=world - 1, tag=cfg.steps), x))
                else:
                    results.append(x)
                    if n == 0:
                        new_reference = x[:, 0].clone()
        for request, _ in pending:
            request.wait()
    return results

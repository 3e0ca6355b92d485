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

Throughput under torchrun (inputs random; weights random unless --checkpoint; NCCL on GPUs,
gloo on CPU), e.g. 4 step ranks + a VAE rank at 720×400:

    torchrun --nproc-per-node 5 -m avatar_engine.causal_dit.liveavatar_tpp \
        --checkpoint ckpt/Wan2.2-S2V-14B --lora ckpt/LiveAvatar/liveavatar.safetensors --vae-rank
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from .liveavatar import LiveAvatarConfig, LiveAvatarStreamer
from .tpp import step_owner


def run_liveavatar_pipeline(streamer: LiveAvatarStreamer | None, reference, motion, prompt_states, block_features,
                            n_blocks: int, *, vae_rank: bool = False, decode=None,
                            stream_cfg: LiveAvatarConfig | None = None):
    """This rank's share of generating `n_blocks` blocks.

    reference (B, C, H, W), motion (B, T, C, H, W), prompt_states (B, S, Dt): the session's
    inputs, on every rank. block_features(n) → wav2vec2 states (B, 4·F, L, Da) of block n.
    With `vae_rank`, the last rank only decodes, by `decode` (given there alone): each
    block's clean latents (B, F, C, H, W) in turn → its frames (a stream decoder such as
    the Wan VAE's `LiveAvatarDecodeStream`). Returns the clean
    latents (B, F, C, H, W) per block on the last step's owner when there is no VAE rank,
    the decoded video per block on the VAE rank, else []. The VAE rank needs no model:
    it may pass streamer None and the stream's config as stream_cfg.
    """
    cfg = streamer.cfg if streamer is not None else stream_cfg
    rank, world = dist.get_rank(), dist.get_world_size()
    step_ranks = world - 1 if vae_rank else world
    if not 1 <= step_ranks <= cfg.steps:
        raise ValueError(f"Live Avatar TPP runs 1 to {cfg.steps} step ranks (plus one VAE rank); got {step_ranks}")
    last = cfg.steps - 1
    is_vae = vae_rank and rank == world - 1
    holder = world - 1 if vae_rank else step_owner(last, step_ranks)
    mine = [] if is_vae else [i for i in range(cfg.steps) if step_owner(i, step_ranks) == rank]
    if mine:
        streamer.reset(reference, motion, prompt_states, steps=mine)
    b, c, h, w = reference.shape
    x_shape = (b, cfg.frames_per_block, c, h, w)
    clip0 = min(n_blocks, cfg.blocks_per_clip)
    phases = [(0, clip0), (clip0, n_blocks)] if cfg.adaptive_sink and n_blocks > clip0 else [(0, n_blocks)]
    results, new_reference = [], None
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
                    results.append(decode(x0))
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
                elif vae_rank:
                    x = x.contiguous()
                    pending.append((dist.isend(x, dst=world - 1, tag=cfg.steps), x))
                else:
                    results.append(x)
                    if n == 0:
                        new_reference = x[:, 0].clone()
        for request, _ in pending:
            request.wait()
    return results


def checkpoint_refusal(args, world: int) -> str | None:
    """The preflight of the published weights on this rank layout (files, GPUs, memory), as
    one line, or None. Its plan is 1 process or N − 1 step ranks + a VAE rank."""
    from .preflight import PreflightError, preflight

    if world > 1 and not args.vae_rank:
        return (f"with --checkpoint run {world - 1} step ranks + --vae-rank (the layout the preflight plans and "
                f"the reference runs), or one process")
    try:
        preflight(args.checkpoint, args.lora or "", world, "bf16", args.height, args.width)
    except PreflightError as e:
        return str(e)
    return None


def main(argv=None):
    """Live Avatar TPP throughput under torchrun (random inputs: a timing tool, not an avatar)."""
    from .checkpoint import load_liveavatar
    from .liveavatar_files import CONFIG
    from .model import CausalDiT, preset
    from .wan_keys import dit_config
    from .wan_vae import LiveAvatarDecodeStream, WanVAE

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--checkpoint", help="a Wan2.2-S2V-14B directory; without it, random weights of --preset")
    p.add_argument("--lora", help="liveavatar.safetensors, merged on load")
    p.add_argument("--preset", default="liveavatar-14b")
    p.add_argument("--height", type=int, default=720, help="video height in pixels")
    p.add_argument("--width", type=int, default=400, help="video width in pixels")
    p.add_argument("--blocks", type=int, default=8, help="blocks of 12 video frames")
    p.add_argument("--vae-rank", action="store_true",
                   help="the last rank decodes with the Wan2.1 VAE (random weights without --checkpoint)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per rank")
    args = p.parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", 1))
    if args.checkpoint:
        refusal = checkpoint_refusal(args, world)
        if refusal:
            print(f"error: {refusal}", file=sys.stderr, flush=True)
            return 2
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if cuda else torch.float32
    is_vae = args.vae_rank and rank == world - 1
    cfg = preset(args.preset)
    model = None
    if not is_vae:
        if args.checkpoint:
            cfg = dit_config(json.loads((Path(args.checkpoint) / CONFIG).read_text()))
            model = load_liveavatar(args.checkpoint, args.lora, device=device, dtype=dtype, cfg=cfg)
        else:
            torch.manual_seed(0)
            default = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            with torch.device(device):
                model = CausalDiT(cfg).eval()
            torch.set_default_dtype(default)
    g = torch.Generator().manual_seed(1)
    h, w = args.height // cfg.vae_stride, args.width // cfg.vae_stride
    rand = lambda *shape: torch.randn(*shape, generator=g).to(device, dtype)
    inputs = (rand(1, cfg.latent_channels, h, w), rand(1, cfg.motion_latents, cfg.latent_channels, h, w),
              rand(1, 32, cfg.text_dim))
    features = rand(1, 12, cfg.audio_layers, cfg.audio_dim)
    decode = None
    if is_vae:
        vae = WanVAE.load(args.checkpoint, device, dtype) if args.checkpoint else WanVAE.random(device, dtype)
        stream = LiveAvatarDecodeStream(vae)
        stream.warm_up(inputs[1].transpose(1, 2))                 # (B, C, T, H, W)
        decode = lambda x0: stream.decode_block(x0.transpose(1, 2))
    streamer = LiveAvatarStreamer(model, LiveAvatarConfig()) if model is not None else None
    dist.barrier()
    start = time.perf_counter()
    run_liveavatar_pipeline(streamer, *inputs, lambda n: features, args.blocks, vae_rank=args.vae_rank,
                            decode=decode, stream_cfg=LiveAvatarConfig())
    if cuda:
        torch.cuda.synchronize()
    dist.barrier()
    elapsed = time.perf_counter() - start
    if rank == world - 1:
        print(f"liveavatar tpp ranks={world} vae_rank={args.vae_rank} preset={cfg.name} {args.height}x{args.width} "
              f"blocks={args.blocks} ms_per_block={1000 * elapsed / args.blocks:.1f} "
              f"fps={12 * args.blocks / elapsed:.2f} (incl. sink prefill and pipeline fill)", flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The causal_dit avatar backend: the engine's `Backend` protocol over a trained checkpoint.

    backend = CausalDiTBackend("model.safetensors")
    backend.reset(reference)        # (H, W, 3) uint8 → the sink, caches cleared
    frames = backend.render(block)  # audio → features → tokens → K-step denoise → VAE decode

Without a checkpoint it refuses with one line: an untrained model draws noise, and noise
must never be shown as an avatar. With avatar.checkpoint a Wan2.2-S2V-14B directory (the
published Live Avatar model), `from_config` goes through `open_liveavatar`: every check
that needs no weights first (files from their headers, GPUs, memory by the sizing plan),
then `LiveAvatarBackend` (liveavatar_backend.py).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from avatar_engine.backend import Block

from .audio import AudioEncoderError, AudioFeatureStream, Wav2Vec2Encoder, WhisperEncoder, mask_gates
from .checkpoint import load_checkpoint
from .preflight import GPU, PreflightError, preflight
from .stream import CausalStreamer
from .vae import ConvCache


class BackendError(RuntimeError):
    """The causal_dit backend cannot run as configured, phrased as one line for the user."""


class CausalDiTBackend:
    def __init__(self, checkpoint: str, *, seed: int = 0, threads: int = 2, audio_encoder: str = "whisper",
                 wav2vec2_dir: str = "", audio_context_s: float = 3.0, encoder=None):
        if not checkpoint:
            raise BackendError("avatar.backend causal_dit needs avatar.checkpoint (a trained model, see "
                               "python -m avatar_engine.causal_dit.train); refusing to show an untrained model")
        if not Path(checkpoint).is_file():
            raise BackendError(f"avatar.checkpoint {checkpoint} is not a checkpoint file")
        torch.set_num_threads(threads)
        self.model, self.vae, stream_cfg = load_checkpoint(checkpoint)
        self.streamer = CausalStreamer(self.model, replace(stream_cfg, seed=seed))
        if encoder is None:
            try:
                encoder = (Wav2Vec2Encoder(wav2vec2_dir, threads) if audio_encoder == "wav2vec2"
                           else WhisperEncoder(threads=threads))
            except AudioEncoderError as e:
                raise BackendError(str(e)) from None
        if encoder.layers != self.model.cfg.audio_layers:
            raise BackendError(f"the {audio_encoder} encoder gives {encoder.layers} layers but the checkpoint "
                               f"was trained on {self.model.cfg.audio_layers}; use the encoder it was trained with")
        self._encoder, self._context_s = encoder, audio_context_s
        self.block_video_frames = stream_cfg.frames_per_block * self.model.cfg.frames_per_latent
        self._block = None

    @classmethod
    def from_config(cls, avatar, causal_dit) -> "CausalDiTBackend":
        """Build from the config's `avatar` and `causal_dit` sections (config.py)."""
        if avatar.checkpoint and Path(avatar.checkpoint).is_dir():
            return open_liveavatar(avatar, causal_dit)
        return cls(avatar.checkpoint, seed=avatar.seed, threads=causal_dit.threads,
                   audio_encoder=causal_dit.audio_encoder, wav2vec2_dir=causal_dit.wav2vec2_dir,
                   audio_context_s=causal_dit.audio_context_s)

    @torch.no_grad()
    def reset(self, reference: np.ndarray) -> None:
        h, w = reference.shape[:2]
        cell = self.vae.cfg.spatial_stride * 2
        if reference.ndim != 3 or reference.shape[2] != 3 or h % cell or w % cell:
            raise BackendError(f"the reference must be (H, W, 3) with H and W multiples of {cell}, got {reference.shape}")
        image = torch.from_numpy(reference).float().div(127.5).sub(1).permute(2, 0, 1)[None]
        self.streamer.reset(self.vae.encode_image(image))
        self._decode_cache = ConvCache()
        self._talk, self._listen = (AudioFeatureStream(self._encoder, self._context_s) for _ in range(2))
        self._block = 0

    @torch.no_grad()
    def render(self, block: Block) -> np.ndarray:
        if self._block is None:
            raise BackendError("call reset(reference) before render()")
        if block.n_frames != self.block_video_frames:
            raise BackendError(f"causal_dit renders blocks of {self.block_video_frames} frames "
                               f"(avatar.frames_per_block), got {block.n_frames}")
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None]
        talk_feats = as_t(self._talk.push(block.talk_audio, block.n_frames))
        listen_feats = as_t(self._listen.push(block.listen_audio, block.n_frames))
        talk_gate, listen_gate = (as_t(g) for g in mask_gates(block.mask, self.model.cfg.frames_per_latent))
        talk, listen = self.streamer.audio_tokens(talk_feats, listen_feats, talk_gate, listen_gate)
        latents = self.streamer.generate_block(self._block, talk, listen)
        self._block += 1
        video = self.vae.decode(latents, self._decode_cache)[0]                # (3, T, H, W) in [-1, 1]
        return ((video.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()

    def flush(self) -> None:
        # Barge-in: forget the agent's pending speech so it no longer drives the mouth;
        # caches stay, so motion continues smoothly from the last frame into listening.
        if self._block is not None:
            self._talk.reset()


def open_liveavatar(avatar, causal_dit, gpus: list[GPU] | None = None):
    """The published Live Avatar model behind the same Backend protocol, in this process on
    cuda:0 (`LiveAvatarBackend`; TPP over several GPUs is `liveavatar_tpp` under torchrun).

    Refuses with one line, before any weight is read, when a file is missing or wrong, no
    GPU is visible, or the planned memory exceeds the GPU (`gpus`: the visible ones).
    """
    try:
        plan = preflight(avatar.checkpoint, avatar.lora, causal_dit.ranks, causal_dit.weights,
                         causal_dit.height, causal_dit.width, gpus)
    except PreflightError as e:
        raise BackendError(str(e)) from None
    if (plan.ranks, plan.weights) != (1, "bf16"):
        raise BackendError(f"the app runs Live Avatar in one process on one GPU (causal_dit.ranks 1, weights bf16), "
                           f"not {plan.ranks} rank(s) in {plan.weights}; across GPUs run torchrun -m "
                           f"avatar_engine.causal_dit.liveavatar_tpp (README: Run Live Avatar on your GPUs)")
    from .liveavatar_backend import LiveAvatarBackend

    return LiveAvatarBackend(avatar.checkpoint, avatar.lora, prompt=causal_dit.prompt,
                             prompt_cache=causal_dit.prompt_cache or None, height=causal_dit.height,
                             width=causal_dit.width, seed=avatar.seed, audio_context_s=causal_dit.audio_context_s)

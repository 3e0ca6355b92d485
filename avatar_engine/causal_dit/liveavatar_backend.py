"""The published Live Avatar model as an engine backend: one process, one device.

    backend = LiveAvatarBackend(checkpoint_dir, lora, prompt="A woman talks ...")
    backend.reset(portrait)          # (H, W, 3) uint8 → reference + motion latents, sink, decoder warm-up
    frames = backend.render(block)   # (12, height, width, 3) uint8: 12 frames at 25 fps from the talk audio

It holds the DiT (LoRA merged; bf16 on a GPU, fp32 on the CPU), the wav2vec2 front end and
the Wan2.1 VAE on one device. The prompt's umT5 states come from the `PromptCache`: encoded
once per prompt by the text encoder, which is freed straight after.

Per block, as `causal_s2v_pipeline_tpp.py` does it with every rank in one process: the talk
audio's wav2vec2 features (over the last `audio_context_s` seconds, `Wav2VecBlockStream`) →
4 denoising steps, each on its own cache (`LiveAvatarStreamer`) → the stream decoder warmed
on the motion latents (`LiveAvatarDecodeStream`). Live Avatar has talk audio only: while the
avatar listens its talk audio is silence, and that is what it hears; the block's listen
audio is not used. The reference drops the first 3 frames of block 0 (the seam after the
decoder's warm-up); to keep 12 frames in every block they are the first kept frame, held.

`backend.open_liveavatar` builds this on cuda:0 after the preflight (files, GPU, memory).
Building it directly with device="cpu" is for small models such as the tests' tiny
checkpoint: the real one would take minutes per block on a CPU.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from avatar_engine.backend import Block

from . import liveavatar_files as la
from .audio import SAMPLE_RATE, AudioEncoderError
from .backend import BackendError
from .checkpoint import CheckpointError, load_liveavatar
from .liveavatar import LiveAvatarConfig, LiveAvatarStreamer
from .prompt_cache import PromptCache, PromptCacheError
from .text_encoder import TextEncoderError, UMT5PromptEncoder
from .wan_keys import dit_config
from .wan_vae import LiveAvatarDecodeStream, WanVAE, WanVAEError
from .wav2vec_features import FPS, Wav2VecBlockStream, Wav2VecFeatures

PROMPT_CACHE = "prompt_cache"       # default folder of cached prompt states, in the checkpoint directory


def portrait_video(image: np.ndarray, height: int, width: int) -> torch.Tensor:
    """(h, w, 3) uint8 RGB → a one-frame video (1, 3, 1, height, width) in [-1, 1]: scaled to
    cover the frame, centre-cropped."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BackendError(f"the reference must be an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    crop = np.ascontiguousarray(resized[top:top + height, left:left + width])
    return torch.from_numpy(crop).float().div(127.5).sub(1).permute(2, 0, 1)[None, :, None]


def umt5_encoder(checkpoint_dir: Path, device):
    """encode(prompt) → umT5 states, loading the 5.7 B-parameter encoder for that call only."""
    def encode(prompt: str) -> torch.Tensor:
        encoder = UMT5PromptEncoder.load(checkpoint_dir, device)
        try:
            return encoder(prompt)
        finally:
            encoder.close()
    return encode


class LiveAvatarBackend:
    block_video_frames = 12             # 3 latent frames × 4; the runtime's block at 25 fps

    def __init__(self, checkpoint: str | Path, lora: str | Path | None, *, prompt: str,
                 prompt_cache: str | Path | None = None, height: int = 720, width: int = 400, seed: int = 0,
                 audio_context_s: float = 3.0, device="cuda:0", dtype=None, lora_alpha: float = la.LORA_ALPHA,
                 encode_prompt=None):
        """checkpoint: the Wan2.2-S2V-14B directory (its config.json gives the model's sizes);
        lora: liveavatar.safetensors; prompt_cache: folder of prompt states (default
        <checkpoint>/prompt_cache); encode_prompt(prompt) → states, for a prompt not cached
        yet (default: the umT5 encoder of the checkpoint); dtype: bf16 on a GPU, fp32 on the
        CPU unless given."""
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"Live Avatar was asked to run on {device} but torch sees no CUDA GPU; "
                               f"run it on a GPU machine, or use avatar.backend portrait here")
        if height % 16 or width % 16:
            raise BackendError(f"Live Avatar needs a video size in multiples of 16 pixels, got {height}×{width}")
        dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        base = Path(checkpoint)
        try:
            cfg = dit_config(json.loads((base / la.CONFIG).read_text()))
            model = load_liveavatar(base, lora or None, device=self.device, dtype=dtype, cfg=cfg, lora_alpha=lora_alpha)
            self.vae = WanVAE.load(base, self.device, dtype)
            features = Wav2VecFeatures(base, self.device, dtype)
            cache = PromptCache(prompt_cache or base / PROMPT_CACHE)
            states = cache.get(prompt, encode=encode_prompt or umt5_encoder(base, self.device))
        except (OSError, ValueError, CheckpointError, WanVAEError, AudioEncoderError, PromptCacheError,
                TextEncoderError) as e:
            raise BackendError(f"Live Avatar {base}: {e}") from None
        if features.layers != cfg.audio_layers:
            raise BackendError(f"{la.WAV2VEC2} gives {features.layers} hidden states, the model mixes "
                               f"{cfg.audio_layers}; download it again with Wan2.2-S2V-14B")
        self.height, self.width = height, width
        self.streamer = LiveAvatarStreamer(model, LiveAvatarConfig(seed=seed))
        self.prompt_states = states[None].to(self.device, dtype)                 # (1, S, Dt)
        self.talk = Wav2VecBlockStream(features, audio_context_s)
        self.decoder = LiveAvatarDecodeStream(self.vae)
        self._block = None

    @torch.no_grad()
    def reset(self, reference: np.ndarray) -> None:
        image = portrait_video(reference, self.height, self.width)            # (1, 3, 1, H, W)
        motion_frames = self.streamer.model.cfg.motion_frames
        ref = self.vae.encode(image)                                           # (1, 16, 1, h, w)
        motion = self.vae.encode(image.repeat(1, 1, motion_frames, 1, 1))      # (1, 16, 19, h, w): the still portrait
        self.streamer.reset(ref[:, :, 0], motion.transpose(1, 2), self.prompt_states)
        self.decoder.warm_up(motion)
        self.talk.reset()
        self._block = 0

    @torch.no_grad()
    def render(self, block: Block) -> np.ndarray:
        if self._block is None:
            raise BackendError("call reset(reference) before render()")
        if block.n_frames != self.block_video_frames or block.fps != FPS or block.sample_rate != SAMPLE_RATE:
            raise BackendError(f"Live Avatar renders blocks of {self.block_video_frames} frames at {FPS} fps with "
                               f"{SAMPLE_RATE} Hz audio, got {block.n_frames} at {block.fps} fps, {block.sample_rate} Hz")
        features = self.talk.push(block.talk_audio)                            # (1, 25, Da, 12)
        audio = self.streamer.audio(features.permute(0, 3, 1, 2).to(self.device))
        latents = self.streamer.generate_block(self._block, audio)            # (1, 3, 16, h, w)
        if not torch.isfinite(latents).all():
            raise BackendError(f"Live Avatar block {self._block} came out non-finite (NaN/inf latents)")
        video = self.decoder.decode_block(latents.transpose(1, 2))[0]          # (3, 12, H, W); 9 for block 0
        held = self.block_video_frames - video.shape[1]
        if held:
            video = torch.cat([video[:, :1].expand(-1, held, -1, -1), video], 1)
        self._block += 1
        return ((video + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()

    def flush(self) -> None:
        # Barge-in: forget the agent's speech heard so far so it no longer drives the mouth;
        # the caches stay, so motion goes on smoothly from the last frame into listening.
        self.talk.reset()

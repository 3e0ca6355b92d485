"""The Wan2.1 VAE of Live Avatar (`Wan2.1_VAE.pth`), decoding as a stream.

The network is diffusers' `AutoencoderKLWan`: layer for layer the reference's
(`wan/modules/vae2_1.py`, and LiveAvatar's `vae_streaming.py` that its TPP pipeline runs),
equal to it within float32 rounding on the committed fixture. The published file keeps the
reference's key names; `diffusers_state_dict` renames them (no tensor changes):

    encoder.conv1 / decoder.conv1        → encoder.conv_in / decoder.conv_in
    {en,de}coder.head.0 / head.2         → norm_out / conv_out
    conv1 / conv2 (the 1×1×1 convs)      → quant_conv / post_quant_conv
    {en,de}coder.middle.0 / .1 / .2      → mid_block.resnets.0 / attentions.0 / resnets.1
    encoder.downsamples.N                → encoder.down_blocks.N
    decoder.upsamples.N                  → decoder.up_blocks.{N // 4}.resnets.{N % 4},
                                           or .upsamplers.0 when N % 4 == 3
    residual.0 / .2 / .3 / .6, shortcut  → norm1 / conv1 / norm2 / conv2, conv_shortcut

Latents are normalised per channel with Wan2.1's mean and std (diffusers' config holds the
same 16 pairs): z = (μ − mean) / std.

Streaming (the reference's `stream_decode`): the decoder runs one latent frame at a time and
every causal convolution keeps its last input frames in a feature cache carried from call to
call, so decoding blocks in turn equals decoding their concatenation. The very first latent
frame decodes to 1 video frame, every later one to 4. Live Avatar warms the stream with the
first 7 latents of the motion video (the reference image repeated 73 frames) and drops their
frames, then keeps the last 12 frames of each 3-latent block, 3 fewer for the first block
(`causal_s2v_pipeline_tpp.py` l.1118–1128): `LiveAvatarDecodeStream`.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

VAE_FILE = "Wan2.1_VAE.pth"
DOWNLOAD = "from the Hugging Face repo Wan-AI/Wan2.2-S2V-14B"
WARMUP_LATENTS = 7          # motion latents that warm the stream decoder
FIRST_BLOCK_DROP = 3        # frames the pipeline drops from the first block after the warm-up


class WanVAEError(RuntimeError):
    """A Wan VAE that cannot be loaded, phrased as one line for the user."""


_RESBLOCK = {"residual.0": "norm1", "residual.2": "conv1", "residual.3": "norm2", "residual.6": "conv2",
             "shortcut": "conv_shortcut"}
_MIDDLE = {"0": "resnets.0", "1": "attentions.0", "2": "resnets.1"}


def _diffusers_key(key: str, stage_len: int) -> str:
    """One reference key → its AutoencoderKLWan name (table in the module docstring)."""
    key = re.sub(r"^conv1\.", "quant_conv.", key)
    key = re.sub(r"^conv2\.", "post_quant_conv.", key)
    key = re.sub(r"^(encoder|decoder)\.conv1\.", r"\1.conv_in.", key)
    key = re.sub(r"^(encoder|decoder)\.head\.0\.", r"\1.norm_out.", key)
    key = re.sub(r"^(encoder|decoder)\.head\.2\.", r"\1.conv_out.", key)
    key = re.sub(r"^(encoder|decoder)\.middle\.(\d)\.", lambda m: f"{m[1]}.mid_block.{_MIDDLE[m[2]]}.", key)
    key = re.sub(r"^encoder\.downsamples\.", "encoder.down_blocks.", key)

    def up(m):
        stage, j = divmod(int(m[1]), stage_len)
        return f"decoder.up_blocks.{stage}." + ("upsamplers.0." if j == stage_len - 1 else f"resnets.{j}.")
    key = re.sub(r"^decoder\.upsamples\.(\d+)\.", up, key)
    for old, new in _RESBLOCK.items():
        key = key.replace(f".{old}.", f".{new}.")
    return key


def diffusers_state_dict(reference: dict[str, torch.Tensor], num_res_blocks: int = 2) -> dict[str, torch.Tensor]:
    """`Wan2.1_VAE.pth` keys → `AutoencoderKLWan` keys; a decoder stage is num_res_blocks + 1
    residual blocks and one upsampler."""
    return {_diffusers_key(k, num_res_blocks + 2): v for k, v in reference.items()}


class WanVAE:
    """Encode video to normalised latents and decode them, in `dtype` on `device`.

    video (B, 3, T, H, W) in [-1, 1], T = 1 + 4k  ↔  latents (B, 16, 1 + k, H/8, W/8)
    """

    def __init__(self, model):
        """model: an `AutoencoderKLWan` already on its device and in its dtype."""
        self.model = model.eval().requires_grad_(False)
        weight = model.post_quant_conv.weight
        self.device, self.dtype = device, dtype = weight.device, weight.dtype
        cfg = model.config
        self.mean = torch.tensor(cfg.latents_mean, dtype=dtype, device=device).view(1, -1, 1, 1, 1)
        # the reference multiplies by 1/std to encode and divides by it to decode: same rounding here
        self.inv_std = 1.0 / torch.tensor(cfg.latents_std, dtype=dtype, device=device).view(1, -1, 1, 1, 1)

    @classmethod
    def load(cls, checkpoint_dir: str | Path, device="cpu", dtype=torch.float32) -> "WanVAE":
        """From `Wan2.1_VAE.pth` in the Wan2.2-S2V-14B directory (widths read from the weights)."""
        path = Path(checkpoint_dir) / VAE_FILE
        if not path.is_file():
            raise WanVAEError(f"{path} not found: download {VAE_FILE} {DOWNLOAD} and put it in {checkpoint_dir}")
        try:
            from diffusers import AutoencoderKLWan
        except ImportError:
            raise WanVAEError("the Wan VAE needs the diffusers package (pip install -r requirements.txt)") from None
        try:
            reference = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:   # a truncated or foreign file: say which, not a traceback
            raise WanVAEError(f"{path} is not a Wan2.1 VAE state dict ({type(e).__name__}); "
                              f"download it again {DOWNLOAD}") from None
        if "encoder.conv1.weight" not in reference or "conv2.weight" not in reference:
            raise WanVAEError(f"{path} is not a Wan2.1 VAE state dict (no encoder.conv1 / conv2); "
                              f"download it again {DOWNLOAD}")
        with torch.device("meta"):
            model = AutoencoderKLWan(base_dim=reference["encoder.conv1.weight"].shape[0],
                                     z_dim=reference["conv2.weight"].shape[0])
        converted = diffusers_state_dict(reference)
        try:
            # tensors converted before an assigning load: ModelMixin.to() would warn about dtypes
            model.load_state_dict({k: v.to(device, dtype) for k, v in converted.items()}, strict=True, assign=True)
        except RuntimeError as e:      # torch lists missing, unexpected, mis-shaped keys after a header line
            detail = " ".join(line.strip() for line in str(e).splitlines()[1:])
            for name, original in zip(converted, reference):      # say it in the file's own key names
                detail = detail.replace(f'"{name}"', f'"{original}"').replace(f"for {name}:", f"for {original}:")
            raise WanVAEError(f"{path} does not match the Wan2.1 VAE layout: {detail[:400]}") from None
        return cls(model)

    @classmethod
    def random(cls, device="cpu", dtype=torch.float32, base_dim: int = 96) -> "WanVAE":
        """The Wan2.1 VAE with random weights (timing without the checkpoint)."""
        from diffusers import AutoencoderKLWan

        with torch.device(device):
            return cls(AutoencoderKLWan(base_dim=base_dim, z_dim=16).to(dtype))

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, 1 + 4k, H, W) in [-1, 1] → normalised mean latents (B, 16, 1 + k, H/8, W/8)."""
        mu = self.model.encode(video.to(self.device, self.dtype)).latent_dist.mean
        return (mu - self.mean) * self.inv_std

    def stream(self) -> "WanStreamDecoder":
        return WanStreamDecoder(self)


class WanStreamDecoder:
    """Latents → frames across calls, with the causal feature cache carried between them.

    decode(latents (B, 16, t, h, w)) → frames (B, 3, 4t, 8h, 8w), 4t − 3 on the first call.
    """

    def __init__(self, vae: WanVAE):
        from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

        self.vae = vae
        self._convs = sum(isinstance(m, WanCausalConv3d) for m in vae.model.decoder.modules())
        self.reset()

    def reset(self):
        self._cache = [None] * self._convs       # per causal conv: its last ≤ 2 input frames
        self._started = False

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        vae = self.vae
        z = latents.to(vae.device, vae.dtype) / vae.inv_std + vae.mean
        x = vae.model.post_quant_conv(z)
        frames = []
        for i in range(x.shape[2]):
            frames.append(vae.model.decoder(x[:, :, i:i + 1], feat_cache=self._cache, feat_idx=[0],
                                            first_chunk=not self._started))
            self._started = True
        out = torch.cat(frames, 2).float()
        return out.clamp_(-1, 1) if clamp else out


class LiveAvatarDecodeStream:
    """The pipeline's use of the stream decoder: warm up on the motion latents, then emit the
    frames of each block.

    warm_up(motion_latents (B, 16, ≥ 7, h, w)); decode_block(block (B, 16, t, h, w)) →
    (B, 3, 4t, 8h, 8w) in [-1, 1]: 4t − 3 frames for the first block.
    """

    def __init__(self, vae: WanVAE):
        self.decoder = vae.stream()
        self._first = True

    def warm_up(self, motion_latents: torch.Tensor):
        self.decoder.reset()
        self.decoder.decode(motion_latents[:, :, :WARMUP_LATENTS])
        self._first = True

    def decode_block(self, block: torch.Tensor) -> torch.Tensor:
        frames = self.decoder.decode(block)[:, :, -4 * block.shape[2]:]
        if self._first:      # the reference keeps 9 of the first block's 12 frames
            frames, self._first = frames[:, :, FIRST_BLOCK_DROP:], False
        return frames

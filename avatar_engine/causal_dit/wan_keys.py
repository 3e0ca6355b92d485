"""Wan2.2-S2V-14B / Live Avatar checkpoint keys ↔ causal_dit keys.

The published transformer (`diffusion_pytorch_model-*.safetensors` of Wan2.2-S2V-14B, the
keys of Live Avatar's `CausalWanModel_S2V`) loads into `CausalDiT(preset("liveavatar-14b"))`
with strict=True after this conversion:

| reference key                                         | ours                                   | change |
| ----------------------------------------------------- | -------------------------------------- | ------ |
| patch_embedding (D, C, 1, 2, 2)                       | patch_embed (D, C·4)                   | Conv3d → Linear: reshape (same order) |
| cond_encoder (D, C, 1, 2, 2)                          | pose_embed (D, C·4)                    | same |
| text_embedding.{0,2} / time_embedding.{0,2}          | text_embed.{0,2} / time_embed.{0,2}    | name |
| time_projection.1                                     | time_mod.1                             | name |
| blocks.N.modulation (1, 6, D)                         | blocks.N.modulation (6, D)             | drop the 1 |
| head.modulation (1, 2, D)                             | head_mod (2, D)                        | drop the 1 |
| head.head (p·C + c rows)                              | head (c·4 + p rows)                    | rows permuted to our unpatchify order |
| trainable_cond_mask                                   | token_kind                             | name |
| frame_packer.proj{,_2x,_4x}                           | motion_packer.proj{,_2x,_4x}           | name |
| casual_audio_encoder.weights (1, L, 1, 1)             | speech_encoder.layer_weights (L,)      | flatten |
| casual_audio_encoder.encoder.conv1_local/conv1_global/conv2/conv3 .conv | speech_encoder.local_conv/global_conv/down1/down2 | name |
| casual_audio_encoder.encoder.final_linear             | speech_encoder.global_out              | name |
| casual_audio_encoder.encoder.padding_tokens (1,1,1,D) | speech_encoder.padding_token (D,)      | flatten |
| audio_injector.injector.J                             | audio_injectors.<block>.attn           | J-th injected block |
| audio_injector.injector_adain_layers.J.linear         | audio_injectors.<block>.adain          | same |
Everything else (blocks.N.{self_attn,cross_attn,norm3,ffn}) keeps its name and shape.
"""
from __future__ import annotations

import re

import torch

from .model import PATCH, CausalDiT, DiTConfig

# (reference prefix, our prefix), first match wins; "{j}"/"{n}" are the injector / block index.
PREFIXES = [
    ("patch_embedding.", "patch_embed."),
    ("cond_encoder.", "pose_embed."),
    ("text_embedding.", "text_embed."),
    ("time_embedding.", "time_embed."),
    ("time_projection.", "time_mod."),
    ("head.modulation", "head_mod"),
    ("head.head.", "head."),
    ("trainable_cond_mask.", "token_kind."),
    ("frame_packer.", "motion_packer."),
    ("casual_audio_encoder.weights", "speech_encoder.layer_weights"),
    ("casual_audio_encoder.encoder.conv1_local.conv.", "speech_encoder.local_conv."),
    ("casual_audio_encoder.encoder.conv1_global.conv.", "speech_encoder.global_conv."),
    ("casual_audio_encoder.encoder.conv2.conv.", "speech_encoder.down1."),
    ("casual_audio_encoder.encoder.conv3.conv.", "speech_encoder.down2."),
    ("casual_audio_encoder.encoder.final_linear.", "speech_encoder.global_out."),
    ("casual_audio_encoder.encoder.padding_tokens", "speech_encoder.padding_token"),
    ("audio_injector.injector_adain_layers.{j}.linear.", "audio_injectors.{n}.adain."),
    ("audio_injector.injector.{j}.", "audio_injectors.{n}.attn."),
    ("blocks.", "blocks."),
]


def _rename(key: str, cfg: DiTConfig, to_ours: bool) -> str:
    layers = cfg.audio_inject_layers
    for ref, ours in PREFIXES:
        src, dst = (ref, ours) if to_ours else (ours, ref)
        pattern = "^" + re.escape(src).replace(r"\{j\}", r"(\d+)").replace(r"\{n\}", r"(\d+)")
        m = re.match(pattern, key)
        if not m:
            continue
        out = dst
        if m.groups():
            i = int(m.group(1))
            if to_ours:
                if i >= len(layers):
                    break
                out = dst.replace("{n}", str(layers[i]))
            else:
                if i not in layers:
                    break
                out = dst.replace("{j}", str(layers.index(i)))
        return out + key[m.end():]
    raise KeyError(f"no conversion rule for checkpoint key {key!r}")


def _head_permutation(cfg: DiTConfig) -> torch.Tensor:
    """Our head row c·4 + p takes Wan's row p·C + c (Wan unpatchifies (p, c), we (c, p))."""
    c, p = cfg.latent_channels, PATCH * PATCH
    return torch.arange(c * p).reshape(p, c).t().flatten()


def _to_ours(ours: str, t: torch.Tensor, cfg: DiTConfig) -> torch.Tensor:
    if ours in ("patch_embed.weight", "pose_embed.weight"):
        return t.reshape(t.shape[0], -1)
    if ours in ("head.weight", "head.bias"):
        return t[_head_permutation(cfg)]
    if ours == "head_mod" or ours.endswith(".modulation"):
        return t.reshape(t.shape[-2:])
    if ours in ("speech_encoder.layer_weights", "speech_encoder.padding_token"):
        return t.flatten()
    return t


def convert_state_dict(reference: dict[str, torch.Tensor], cfg: DiTConfig) -> dict[str, torch.Tensor]:
    """A reference (Wan2.2-S2V / Live Avatar) state dict → ours for `CausalDiT(cfg)`."""
    out = {}
    for key, t in reference.items():
        ours = _rename(key, cfg, to_ours=True)
        out[ours] = _to_ours(ours, t, cfg)
    return out


def converted_shapes(cfg: DiTConfig) -> dict[str, tuple[int, ...]]:
    """Our state dict's key → shape for `cfg` (the meta device: no memory)."""
    with torch.device("meta"):
        model = CausalDiT(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def reference_shapes(cfg: DiTConfig) -> dict[str, tuple[int, ...]]:
    """The reference checkpoint's key → shape that converts onto `CausalDiT(cfg)` exactly."""
    out = {}
    for ours, shape in converted_shapes(cfg).items():
        ref = _rename(ours, cfg, to_ours=False)
        if ours in ("patch_embed.weight", "pose_embed.weight"):
            shape = (shape[0], cfg.latent_channels, 1, PATCH, PATCH)
        elif ours.endswith("modulation") or ours == "head_mod":
            shape = (1, *shape)
        elif ours == "speech_encoder.layer_weights":
            shape = (1, shape[0], 1, 1)
        elif ours == "speech_encoder.padding_token":
            shape = (1, 1, 1, shape[0])
        out[ref] = shape
    return out

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
from dataclasses import replace

import torch

from . import liveavatar_files as la
from .model import PATCH, CausalDiT, DiTConfig, preset

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


def _rename(key: str, cfg: DiTConfig) -> str:
    """A reference key → ours."""
    for ref, ours in PREFIXES:
        pattern = "^" + re.escape(ref).replace(r"\{j\}", r"(\d+)")
        m = re.match(pattern, key)
        if not m:
            continue
        if m.groups():
            j = int(m.group(1))
            if j >= len(cfg.audio_inject_layers):
                break
            ours = ours.replace("{n}", str(cfg.audio_inject_layers[j]))
        return ours + key[m.end():]
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
        ours = _rename(key, cfg)
        out[ours] = _to_ours(ours, t, cfg)
    return out


def converted_shapes(cfg: DiTConfig) -> dict[str, tuple[int, ...]]:
    """Our state dict's key → shape for `cfg` (the meta device: no memory)."""
    with torch.device("meta"):
        model = CausalDiT(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def wan_config(cfg: DiTConfig) -> dict:
    """The Wan2.2-S2V config.json of the transformer `CausalDiT(cfg)` loads (a Live Avatar preset)."""
    if not cfg.reference_tokens or cfg.talk_listen or cfg.audio_hidden != cfg.dim or cfg.audio_layers != la.AUDIO_LAYERS:
        raise ValueError(f"preset {cfg.name} is not a Live Avatar model")
    return la.WAN_S2V_14B | dict(in_dim=cfg.latent_channels, out_dim=cfg.latent_channels, cond_dim=cfg.latent_channels,
                                 dim=cfg.dim, ffn_dim=cfg.ffn_dim, num_heads=cfg.heads, num_layers=cfg.layers,
                                 freq_dim=cfg.freq_dim, text_dim=cfg.text_dim, audio_dim=cfg.audio_dim,
                                 num_audio_token=cfg.audio_tokens, audio_inject_layers=list(cfg.audio_inject_layers))


def dit_config(config: dict) -> DiTConfig:
    """Our config for the transformer a Wan2.2-S2V config.json describes: its sizes on the
    structure of Live Avatar (a config.json with other switches is not one)."""
    c = la.INIT_DEFAULTS | config
    switches = ("patch_size", "qk_norm", "cross_attn_norm", "enable_adain", "enable_framepack")
    other = [f"{k} {c[k]}" for k in switches if c[k] != la.WAN_S2V_14B[k]]
    if not c["in_dim"] == c["out_dim"] == c["cond_dim"]:
        other.append(f"in/out/cond_dim {c['in_dim']}/{c['out_dim']}/{c['cond_dim']}")
    if other:
        raise ValueError(f"config.json is not a Live Avatar (Wan2.2-S2V) transformer: {', '.join(other)}")
    full = preset("liveavatar-14b")
    cfg = replace(full, latent_channels=c["in_dim"], dim=c["dim"], ffn_dim=c["ffn_dim"], heads=c["num_heads"],
                  layers=c["num_layers"], freq_dim=c["freq_dim"], text_dim=c["text_dim"], audio_dim=c["audio_dim"],
                  audio_hidden=c["dim"], audio_tokens=c["num_audio_token"],
                  audio_inject_layers=tuple(c["audio_inject_layers"]))
    return cfg if cfg == full else replace(cfg, name=f"liveavatar ({cfg.dim} wide, {cfg.layers} layers)")


def reference_shapes(cfg: DiTConfig) -> dict[str, tuple[int, ...]]:
    """The reference checkpoint's key → shape that converts onto `CausalDiT(cfg)` exactly
    (the layout `liveavatar_files` computes from config.json)."""
    return la.transformer_tensors(wan_config(cfg))

"""Wan's umT5-XXL prompt encoder (`models_t5_umt5-xxl-enc-bf16.pth`, Wan's own T5 code) run by
transformers' `UMT5EncoderModel`, which computes the same function: pre-RMSNorm blocks with
a per-layer relative position bias (32 buckets, max distance 128), unscaled attention,
gated tanh-GELU FFN. `wan_t5_state_dict` renames the keys; the fixture test checks the
outputs against Wan's T5Encoder.

Used once per persona to fill the `PromptCache`, then freed: the 5.7 B-parameter encoder
is never resident during a session.

    encoder = UMT5PromptEncoder.load(checkpoint_dir)          # bf16 on a GPU
    states = PromptCache(folder).get(prompt, encode=encoder)  # (S, 4096)
    encoder.close()
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import torch

CHECKPOINT = "models_t5_umt5-xxl-enc-bf16.pth"
TOKENIZER = "google/umt5-xxl"
TEXT_LEN = 512
# Wan's umt5_xxl(): vocab 256384, 4096 wide, 64 heads × 64, ffn 10240, 24 layers, 32 buckets
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_heads=64, num_layers=24,
                relative_attention_num_buckets=32, relative_attention_max_distance=128)


class TextEncoderError(RuntimeError):
    """A text encoder that cannot be loaded, phrased as one line."""


def umt5_config(**sizes):
    from transformers import UMT5Config

    return UMT5Config(**(UMT5_XXL | sizes), feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6,
                      dropout_rate=0.0, is_encoder_decoder=False, use_cache=False)


def wan_t5_state_dict(wan: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan's T5Encoder keys → transformers' UMT5EncoderModel keys."""
    block = {"norm1.weight": "layer.0.layer_norm.weight", "norm2.weight": "layer.1.layer_norm.weight",
             "attn.q.weight": "layer.0.SelfAttention.q.weight", "attn.k.weight": "layer.0.SelfAttention.k.weight",
             "attn.v.weight": "layer.0.SelfAttention.v.weight", "attn.o.weight": "layer.0.SelfAttention.o.weight",
             "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
             "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",   # GELU'd half
             "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
             "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight"}
    out = {}
    for key, t in wan.items():
        if key == "token_embedding.weight":
            out["shared.weight"] = out["encoder.embed_tokens.weight"] = t
        elif key == "norm.weight":
            out["encoder.final_layer_norm.weight"] = t
        else:
            m = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
            if m is None or m[2] not in block:
                raise TextEncoderError(f"{key!r} is not a key of Wan's umT5 encoder")
            out[f"encoder.block.{m[1]}.{block[m[2]]}"] = t
    return out


def clean_prompt(text: str) -> str:
    """Wan's 'whitespace' cleaning (html entities, runs of spaces); ftfy's mojibake repair is
    left out: it changes nothing in a prompt typed as UTF-8."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()


class UMT5PromptEncoder:
    def __init__(self, model, tokenizer=None):
        self.model, self.tokenizer = model, tokenizer

    @classmethod
    def load(cls, checkpoint_dir: str | Path, device=None, dtype=None) -> "UMT5PromptEncoder":
        from transformers import AutoTokenizer, UMT5EncoderModel

        checkpoint_dir = Path(checkpoint_dir)
        weights, tokenizer_dir = checkpoint_dir / CHECKPOINT, checkpoint_dir / TOKENIZER
        for path in (weights, tokenizer_dir):
            if not path.exists():
                raise TextEncoderError(f"{path} is missing: it comes with Wan2.2-S2V-14B")
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        with torch.device("meta"):
            model = UMT5EncoderModel(umt5_config())
        state = wan_t5_state_dict(torch.load(weights, map_location=device, weights_only=True))
        model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
        return cls(model.eval(), AutoTokenizer.from_pretrained(str(tokenizer_dir)))

    @torch.no_grad()
    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (S,) of one prompt → states (S, Dt): the positions Wan keeps (it pads
        to 512 with a key mask and trims, which leaves these positions unchanged)."""
        device = self.model.shared.weight.device
        return self.model(input_ids=ids[None].to(device)).last_hidden_state[0]

    def __call__(self, prompt: str) -> torch.Tensor:
        ids = self.tokenizer(clean_prompt(prompt), truncation=True, max_length=TEXT_LEN,
                             add_special_tokens=True, return_tensors="pt").input_ids[0]
        return self.encode_ids(ids)

    def close(self):
        """Free the encoder (the prompt states live on in the cache)."""
        self.model = self.tokenizer = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

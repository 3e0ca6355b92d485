"""Merge a PEFT LoRA (Live Avatar's `liveavatar.safetensors`) into a state dict on load.

Live Avatar trains rank-128, alpha-64 LoRA adapters on every Linear whose name ends in
q, k, v, o, ffn.0 or ffn.2 (PEFT suffix matching, `liveavatar_files.lora_targets`: 40 × 8
attention + 40 × 2 FFN + 12 × 4 audio-injector layers = 448 at full size) and merges them with PEFT's `merge_and_unload`:
W ← W + (alpha / rank) · B @ A. Here the same sum is done in fp32 on the reference-named
state dict, before `wan_keys.convert_state_dict`, then cast back to the weight's dtype.

Accepted key forms (the file's prefix is PEFT's, with or without its wrapper):
    [base_model.model.]<module>.lora_A[.default].weight   (rank, in)
    [base_model.model.]<module>.lora_B[.default].weight   (out, rank)
"""
from __future__ import annotations

import re

import torch

LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.default)?\.weight$")


class LoRAError(ValueError):
    """A LoRA file that does not fit the checkpoint, phrased as one line."""


def lora_pairs(lora: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """LoRA tensors → {module: (A (r, in), B (out, r))}."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in lora.items():
        m = LORA_KEY.match(key)
        if m is None:
            raise LoRAError(f"LoRA key {key!r} is not a PEFT lora_A/lora_B weight")
        parts.setdefault(m["module"], {})[m["ab"]] = t
    missing = [mod for mod, ab in parts.items() if set(ab) != {"A", "B"}]
    if missing:
        raise LoRAError(f"LoRA module {missing[0]} has only one of lora_A / lora_B")
    return {mod: (ab["A"], ab["B"]) for mod, ab in parts.items()}


def merge_lora(state_dict: dict[str, torch.Tensor], lora: dict[str, torch.Tensor], alpha: float) -> int:
    """Add every LoRA delta into `state_dict` (reference key names) in place; returns the
    number of merged layers."""
    pairs = lora_pairs(lora)
    for module, (a, b) in pairs.items():
        key = f"{module}.weight"
        if key not in state_dict:
            raise LoRAError(f"LoRA targets {module}, which the checkpoint does not have: "
                            f"is this LoRA for another base model?")
        w = state_dict[key]
        if (b.shape[0], a.shape[1]) != tuple(w.shape) or a.shape[0] != b.shape[1]:
            raise LoRAError(f"LoRA for {module} has shapes A {tuple(a.shape)}, B {tuple(b.shape)}; "
                            f"the weight is {tuple(w.shape)}")
        scale = alpha / a.shape[0]
        state_dict[key] = (w.float() + scale * (b.float() @ a.float())).to(w.dtype)
    return len(pairs)


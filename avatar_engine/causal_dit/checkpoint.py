"""Checkpoints in safetensors: the DiT and VAE weights plus the configs that built them.

The configs travel as JSON in the file's string metadata, so a checkpoint alone rebuilds
its model. `load_liveavatar` loads the published Live Avatar DiT instead: the
Wan2.2-S2V-14B transformer shards plus `liveavatar.safetensors`, LoRA merged on load.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

import torch

from .liveavatar_files import LORA_ALPHA
from .lora import LoRAError, merge_lora
from .model import CausalDiT, DiTConfig, preset
from .positions import PositionScheme
from .stream import StreamConfig
from .vae import StreamingVAE, VAEConfig
from .wan_keys import convert_state_dict, reference_shapes


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used, phrased as one line for the user."""


def save_checkpoint(path: str | Path, model: CausalDiT, vae: StreamingVAE, stream: StreamConfig):
    tensors = {f"dit.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors |= {f"vae.{k}": v.detach().contiguous() for k, v in vae.state_dict().items()}
    meta = {"dit": dataclasses.asdict(model.cfg), "vae": dataclasses.asdict(vae.cfg),
            "stream": dataclasses.asdict(stream)}
    save_file(tensors, str(path), metadata={"causal_dit": json.dumps(meta)})


def load_checkpoint(path: str | Path) -> tuple[CausalDiT, StreamingVAE, StreamConfig]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"causal_dit checkpoint {path} does not exist; train one with "
                              f"python -m avatar_engine.causal_dit.train")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["causal_dit"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:   # a wrong or damaged file: say which, not a traceback
        raise CheckpointError(f"{path} is not a causal_dit safetensors checkpoint ({type(e).__name__})") from None
    stream = meta["stream"]
    stream["positions"] = PositionScheme(**stream["positions"])
    model = CausalDiT(DiTConfig(**meta["dit"]))
    vae = StreamingVAE(VAEConfig(**meta["vae"]))
    model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("dit.")})
    vae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("vae.")})
    return model.eval(), vae.eval(), StreamConfig(**stream)


def load_liveavatar(base_dir: str | Path, lora: str | Path | None = None, *, device=None, dtype=None,
                    cfg: DiTConfig | None = None, lora_alpha: float = LORA_ALPHA) -> CausalDiT:
    """The Live Avatar DiT from a Wan2.2-S2V-14B directory (its diffusion_pytorch_model*.safetensors)
    and the Live Avatar LoRA, merged: bf16 on a GPU, fp32 on the CPU unless told."""
    base_dir = Path(base_dir)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    cfg = cfg or preset("liveavatar-14b")
    files = sorted(base_dir.glob("diffusion_pytorch_model*.safetensors"))
    if not files:
        raise CheckpointError(f"{base_dir} has no diffusion_pytorch_model*.safetensors: download "
                              f"Wan2.2-S2V-14B into it")
    state = {}
    for file in files:
        with safe_open(str(file), framework="pt", device=str(device)) as f:
            for key in f.keys():
                state[key] = f.get_tensor(key).to(dtype)
    expected = reference_shapes(cfg)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        first = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected
                 else f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, expected {expected[wrong[0]]}")
        raise CheckpointError(f"{base_dir} is not a {cfg.name} transformer ({len(missing)} missing, "
                              f"{len(unexpected)} unexpected, {len(wrong)} wrongly shaped keys; {first})")
    if lora is not None:
        if not Path(lora).is_file():
            raise CheckpointError(f"LoRA {lora} does not exist: download liveavatar.safetensors")
        with safe_open(str(lora), framework="pt", device=str(device)) as f:
            weights = {k: f.get_tensor(k) for k in f.keys()}
        try:
            merge_lora(state, weights, lora_alpha)
        except LoRAError as e:
            raise CheckpointError(f"{lora}: {e}") from None
    with torch.device("meta"):
        model = CausalDiT(cfg)
    model.load_state_dict(convert_state_dict(state, cfg), strict=True, assign=True)
    return model.eval()

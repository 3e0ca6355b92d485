"""Checkpoints in safetensors: the DiT and VAE weights plus the configs that built them.

The configs travel as JSON in the file's string metadata, so a checkpoint alone rebuilds
its model.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from .model import CausalDiT, DiTConfig
from .positions import PositionScheme
from .stream import StreamConfig
from .vae import StreamingVAE, VAEConfig


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

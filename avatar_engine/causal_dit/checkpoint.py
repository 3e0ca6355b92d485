"""Checkpoints in safetensors: the DiT and VAE weights plus the configs that built them.

The safetensors layout is written and read here directly (8-byte little-endian header
length, a JSON header of dtype/shape/byte offsets plus string metadata, then the raw
little-endian tensor bytes), so no extra package is needed and files open with the
`safetensors` library unchanged.
"""
from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import torch

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
    write_safetensors(path, tensors, {"causal_dit": json.dumps(meta)})


def load_checkpoint(path: str | Path) -> tuple[CausalDiT, StreamingVAE, StreamConfig]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"causal_dit checkpoint {path} does not exist; train one with "
                              f"python -m avatar_engine.causal_dit.train")
    try:
        tensors, metadata = read_safetensors(path)
        meta = json.loads(metadata["causal_dit"])
    except Exception as e:   # a wrong or damaged file: say which, not a traceback
        raise CheckpointError(f"{path} is not a causal_dit safetensors checkpoint ({type(e).__name__})") from None
    stream = meta["stream"]
    stream["positions"] = PositionScheme(**stream["positions"])
    model = CausalDiT(DiTConfig(**meta["dit"]))
    vae = StreamingVAE(VAEConfig(**meta["vae"]))
    model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("dit.")})
    vae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("vae.")})
    return model.eval(), vae.eval(), StreamConfig(**stream)


_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
           torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]):
    header, chunks, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        data = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)          # the data buffer starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for data in chunks:
            f.write(data)


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {})
    data = memoryview(raw)[8 + n:]
    by_name = {v: k for k, v in _DTYPES.items()}
    tensors = {}
    for name, spec in header.items():
        begin, end = spec["data_offsets"]
        flat = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.uint8)
        tensors[name] = flat.view(by_name[spec["dtype"]]).reshape(spec["shape"])
    return tensors, metadata

"""A full-size Live Avatar checkpoint directory without its data, for tests.

It carries the real tensor names and shapes the reference code builds
(tests/fixtures/liveavatar, see tools/liveavatar_keys.py): each safetensors file is its
header, then a hole up to its full size; each .pth holds stride-0 tensors of the full
shapes. 32.6 GB apparent, about 0.5 MB on disk.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch

from avatar_engine.causal_dit import liveavatar_files as la

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests/fixtures/liveavatar/wan_s2v_14b_keys.json.gz"
SHARD_BYTES = 10 * 10**9     # the published shards are ≤ 10 GB each, 4 in all


def reference() -> dict:
    """The reference's tensors: {"transformer" | "lora" | "vae" | "t5": {name: shape}, "config": {...}}."""
    with gzip.open(FIXTURE, "rt") as f:
        d = json.load(f)
    return {k: {name: tuple(s) for name, s in d[k]} for k in ("transformer", "lora", "vae", "t5")} | {
        "config": d["transformer_config"]}


def write_sparse_safetensors(path: Path, tensors: dict[str, tuple], dtype: str = "BF16") -> int:
    """A safetensors file with these names and shapes whose data is a hole; returns its size."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        n = torch.Size(shape).numel() * la.DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        f.truncate(8 + len(raw) + offset)
    return offset


def write_stride0_pth(path: Path, tensors: dict[str, tuple]) -> None:
    torch.save({k: torch.zeros(1, dtype=torch.bfloat16).expand(*s) for k, s in tensors.items()}, path)


def build_checkpoint(root: Path, reference) -> tuple[Path, Path]:
    """Wan2.2-S2V-14B/ and liveavatar.safetensors as published, without their data."""
    base = root / "Wan2.2-S2V-14B"
    base.mkdir()
    (base / la.CONFIG).write_text(json.dumps({"_class_name": "WanModel_S2V", **reference["config"]}))
    shards, size = [[]], 0
    for name, shape in reference["transformer"].items():
        n = torch.Size(shape).numel() * 2
        if size + n > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += n
    weight_map, total = {}, 0
    for i, names in enumerate(shards, 1):
        file = f"diffusion_pytorch_model-{i:05d}-of-{len(shards):05d}.safetensors"
        total += write_sparse_safetensors(base / file, {k: reference["transformer"][k] for k in names})
        weight_map |= {k: file for k in names}
    (base / la.INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    write_stride0_pth(base / la.VAE, reference["vae"])
    write_stride0_pth(base / la.T5, reference["t5"])
    w2v = base / la.WAV2VEC2
    w2v.mkdir()
    (w2v / "config.json").write_text(json.dumps({"num_hidden_layers": 24, "hidden_size": 1024}))
    (w2v / "preprocessor_config.json").write_text(json.dumps({"sampling_rate": 16000}))
    (w2v / "vocab.json").write_text(json.dumps({"<pad>": 0, "a": 1}))
    write_sparse_safetensors(w2v / "model.safetensors", {"wav2vec2.feature_projection.projection.weight": (1024, 512)})
    lora = root / "liveavatar.safetensors"
    write_sparse_safetensors(lora, reference["lora"])
    return base, lora

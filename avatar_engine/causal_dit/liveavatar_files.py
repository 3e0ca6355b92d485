"""The published Live Avatar checkpoint on disk, checked from file headers alone.

Two downloads make it up:
    Wan2.2-S2V-14B/             the base (Wan-AI/Wan2.2-S2V-14B)
        config.json                                   transformer config (diffusers style)
        diffusion_pytorch_model.safetensors.index.json   tensor → shard
        diffusion_pytorch_model-0000{1..4}-of-00004.safetensors   the 16.3 B transformer
        Wan2.1_VAE.pth                                the 16-channel video VAE
        models_t5_umt5-xxl-enc-bf16.pth               the umT5-XXL text encoder
        wav2vec2-large-xlsr-53-english/               the speech encoder (transformers)
    liveavatar.safetensors      the LoRA (Quark-Vision/Live-Avatar): rank 128, alpha 64,
                                on every q/k/v/o/ffn.0/ffn.2 Linear (448 layers)

What each file must hold is computed here from config.json the way the reference builds
its model (`from_pretrained` fills any key config.json lacks with the `__init__` default)
— tests/fixtures/liveavatar/ holds the reference's own list to prove it. Verifying reads
the safetensors header (an 8-byte length, then JSON) and the pickle inside a .pth zip,
never tensor data, so a 49 GB directory checks in well under a second.

    python -m avatar_engine.causal_dit.liveavatar_files --checkpoint DIR --lora FILE
"""
from __future__ import annotations

import json
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.json"
INDEX = "diffusion_pytorch_model.safetensors.index.json"
VAE = "Wan2.1_VAE.pth"
T5 = "models_t5_umt5-xxl-enc-bf16.pth"
WAV2VEC2 = "wav2vec2-large-xlsr-53-english"

# The shape-relevant arguments of the reference transformer's __init__ (CausalWanModel_S2V,
# the same as Wan2.2's WanModel_S2V): what from_pretrained uses when config.json is silent.
INIT_DEFAULTS = dict(patch_size=[1, 2, 2], in_dim=16, dim=2048, ffn_dim=8192, freq_dim=256, text_dim=4096,
                     out_dim=16, num_heads=16, num_layers=32, qk_norm=True, cross_attn_norm=True, cond_dim=0,
                     audio_dim=5120, num_audio_token=4, enable_adain=False,
                     audio_inject_layers=[0, 4, 8, 12, 16, 20, 24, 27], enable_framepack=False)
# Wan2.2-S2V-14B (wan/configs/wan_s2v_14B.py), as its config.json carries it.
WAN_S2V_14B = INIT_DEFAULTS | dict(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, cond_dim=16,
                                   audio_dim=1024, enable_adain=True, enable_framepack=True,
                                   audio_inject_layers=[0, 4, 8, 12, 16, 20, 24, 27, 30, 33, 36, 39])
AUDIO_LAYERS = 25                       # wav2vec2-large: 24 transformer layers + the input
LORA_RANK, LORA_ALPHA = 128, 64         # liveavatar/configs/s2v_causal_sft.yaml
LORA_TARGETS = ("q", "k", "v", "o", "ffn.0", "ffn.2")
PEFT_PREFIX = "base_model.model."       # what get_peft_model adds; the reference adds it when absent

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
               "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
FLOAT_DTYPES = {"F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
MAX_HEADER_BYTES = 100 * 2**20          # safetensors' own limit

Shape = tuple[int, ...]


class CheckpointFileError(RuntimeError):
    """A Live Avatar file that is missing or unreadable, phrased as one line for the user."""


# ── what the files must hold ──────────────────────────────────────────────────────────


def transformer_tensors(config: dict) -> dict[str, Shape]:
    """Every state-dict tensor of the S2V transformer `config` builds, with its shape."""
    c = INIT_DEFAULTS | config
    d, f, patch = c["dim"], c["ffn_dim"], tuple(c["patch_size"])
    t: dict[str, Shape] = {}

    def linear(name, n_in, n_out):
        t[f"{name}.weight"], t[f"{name}.bias"] = (n_out, n_in), (n_out,)

    def conv(name, n_in, n_out, kernel):
        t[f"{name}.weight"], t[f"{name}.bias"] = (n_out, n_in, *kernel), (n_out,)

    def attention(name):                 # WanSelfAttention / WanCrossAttention
        for proj in "qkvo":
            linear(f"{name}.{proj}", d, d)
        if c["qk_norm"]:
            t[f"{name}.norm_q.weight"] = t[f"{name}.norm_k.weight"] = (d,)

    conv("patch_embedding", c["in_dim"], d, patch)
    linear("text_embedding.0", c["text_dim"], d)
    linear("text_embedding.2", d, d)
    linear("time_embedding.0", c["freq_dim"], d)
    linear("time_embedding.2", d, d)
    linear("time_projection.1", d, 6 * d)
    for i in range(c["num_layers"]):
        b = f"blocks.{i}"
        t[f"{b}.modulation"] = (1, 6, d)
        attention(f"{b}.self_attn")
        if c["cross_attn_norm"]:
            t[f"{b}.norm3.weight"], t[f"{b}.norm3.bias"] = (d,), (d,)
        attention(f"{b}.cross_attn")
        linear(f"{b}.ffn.0", d, f)
        linear(f"{b}.ffn.2", f, d)
    t["head.modulation"] = (1, 2, d)
    linear("head.head", d, c["out_dim"] * math.prod(patch))
    if c["cond_dim"] > 0:
        conv("cond_encoder", c["cond_dim"], d, patch)
    # CausalAudioEncoder: per-layer mix weights, then causal convs to 4 local tokens (+ global)
    hidden, tokens = d, c["num_audio_token"]
    t["casual_audio_encoder.weights"] = (1, AUDIO_LAYERS, 1, 1)
    enc = "casual_audio_encoder.encoder"
    t[f"{enc}.padding_tokens"] = (1, 1, 1, hidden)
    conv(f"{enc}.conv1_local.conv", c["audio_dim"], hidden // 4 * tokens, (3,))
    if c["enable_adain"]:
        conv(f"{enc}.conv1_global.conv", c["audio_dim"], hidden // 4, (3,))
    conv(f"{enc}.conv2.conv", hidden // 4, hidden // 2, (3,))
    conv(f"{enc}.conv3.conv", hidden // 2, hidden, (3,))
    if c["enable_adain"]:
        linear(f"{enc}.final_linear", hidden, hidden)
    injected = range(len(c["audio_inject_layers"]))
    for j in injected:
        attention(f"audio_injector.injector.{j}")
    if c["enable_adain"]:
        for j in injected:
            linear(f"audio_injector.injector_adain_layers.{j}.linear", d, 2 * d)
    t["trainable_cond_mask.weight"] = (3, d)
    if c["enable_framepack"]:   # motion latents (16 channels) packed at 1×, 2× and 4×
        for name, k in (("proj", (1, 2, 2)), ("proj_2x", (2, 4, 4)), ("proj_4x", (4, 8, 8))):
            conv(f"frame_packer.{name}", 16, d, k)
    return t


def lora_targets(transformer: dict[str, Shape]) -> dict[str, Shape]:
    """The Linear layers PEFT wraps for LORA_TARGETS (suffix match): name → (out, in)."""
    layers = {}
    for key, shape in transformer.items():
        module = key.removesuffix(".weight")
        if key.endswith(".weight") and len(shape) == 2 and any(
                module == s or module.endswith("." + s) for s in LORA_TARGETS):
            layers[module] = shape
    return layers


def lora_tensors(transformer: dict[str, Shape], rank: int = LORA_RANK) -> dict[str, Shape]:
    """The adapter tensors of liveavatar.safetensors, as PEFT names them in the wrapped model."""
    t = {}
    for module, (n_out, n_in) in lora_targets(transformer).items():
        t[f"{PEFT_PREFIX}{module}.lora_A.default.weight"] = (rank, n_in)
        t[f"{PEFT_PREFIX}{module}.lora_B.default.weight"] = (n_out, rank)
    return t


def vae_tensors(dim: int = 96, z_dim: int = 16, mult=(1, 2, 4, 4), res_blocks: int = 2,
                temporal_down=(False, True, True)) -> dict[str, Shape]:
    """Wan2.1's video VAE (`WanVAE_`, the state dict Wan2.1_VAE.pth holds)."""
    t: dict[str, Shape] = {}

    def conv(name, n_in, n_out, kernel):
        t[f"{name}.weight"], t[f"{name}.bias"] = (n_out, n_in, *kernel), (n_out,)

    def residual(name, n_in, n_out):   # RMS norm gamma, SiLU, causal conv, ×2; 1×1×1 shortcut
        t[f"{name}.residual.0.gamma"] = (n_in, 1, 1, 1)
        conv(f"{name}.residual.2", n_in, n_out, (3, 3, 3))
        t[f"{name}.residual.3.gamma"] = (n_out, 1, 1, 1)
        conv(f"{name}.residual.6", n_out, n_out, (3, 3, 3))
        if n_in != n_out:
            conv(f"{name}.shortcut", n_in, n_out, (1, 1, 1))

    def middle(name, width):
        residual(f"{name}.0", width, width)
        t[f"{name}.1.norm.gamma"] = (width, 1, 1)
        conv(f"{name}.1.to_qkv", width, 3 * width, (1, 1))
        conv(f"{name}.1.proj", width, width, (1, 1))
        residual(f"{name}.2", width, width)

    levels = len(mult)
    dims = [dim * m for m in (1, *mult)]
    conv("encoder.conv1", 3, dims[0], (3, 3, 3))
    n = 0
    for i in range(levels):
        n_in, n_out = dims[i], dims[i + 1]
        for _ in range(res_blocks):
            residual(f"encoder.downsamples.{n}", n_in, n_out)
            n_in, n = n_out, n + 1
        if i < levels - 1:              # stride-2 spatial conv, and in time where asked
            conv(f"encoder.downsamples.{n}.resample.1", n_out, n_out, (3, 3))
            if temporal_down[i]:
                conv(f"encoder.downsamples.{n}.time_conv", n_out, n_out, (3, 1, 1))
            n += 1
    middle("encoder.middle", dims[-1])
    t["encoder.head.0.gamma"] = (dims[-1], 1, 1, 1)
    conv("encoder.head.2", dims[-1], 2 * z_dim, (3, 3, 3))
    conv("conv1", 2 * z_dim, 2 * z_dim, (1, 1, 1))
    conv("conv2", z_dim, z_dim, (1, 1, 1))

    dims = [dim * m for m in (mult[-1], *mult[::-1])]
    temporal_up = temporal_down[::-1]
    conv("decoder.conv1", z_dim, dims[0], (3, 3, 3))
    middle("decoder.middle", dims[0])
    n = 0
    for i in range(levels):
        n_in, n_out = dims[i] // (2 if i > 0 else 1), dims[i + 1]   # after an upsample: half width
        for _ in range(res_blocks + 1):
            residual(f"decoder.upsamples.{n}", n_in, n_out)
            n_in, n = n_out, n + 1
        if i < levels - 1:              # ×2 nearest + conv to half width; ×2 in time where asked
            conv(f"decoder.upsamples.{n}.resample.1", n_out, n_out // 2, (3, 3))
            if temporal_up[i]:
                conv(f"decoder.upsamples.{n}.time_conv", n_out, 2 * n_out, (3, 1, 1))
            n += 1
    t["decoder.head.0.gamma"] = (dims[-1], 1, 1, 1)
    conv("decoder.head.2", dims[-1], 3, (3, 3, 3))
    return t


def t5_tensors(vocab: int = 256384, dim: int = 4096, ffn: int = 10240, layers: int = 24,
               heads: int = 64, buckets: int = 32) -> dict[str, Shape]:
    """The umT5-XXL encoder (Wan's T5Encoder: gated-GELU FFN, relative positions per block)."""
    t: dict[str, Shape] = {"token_embedding.weight": (vocab, dim)}
    for i in range(layers):
        b = f"blocks.{i}"
        t[f"{b}.norm1.weight"] = t[f"{b}.norm2.weight"] = (dim,)
        for proj in "qkvo":
            t[f"{b}.attn.{proj}.weight"] = (dim, dim)
        t[f"{b}.ffn.gate.0.weight"] = t[f"{b}.ffn.fc1.weight"] = (ffn, dim)
        t[f"{b}.ffn.fc2.weight"] = (dim, ffn)
        t[f"{b}.pos_embedding.embedding.weight"] = (buckets, heads)
    t["norm.weight"] = (dim,)
    return t


def parameters(tensors: dict[str, Shape]) -> int:
    return sum(math.prod(s) for s in tensors.values())


# ── reading headers ───────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Tensor:
    dtype: str
    shape: Shape
    nbytes: int              # as the header's data offsets say


def safetensors_header(path: Path) -> dict[str, Tensor]:
    """Tensor names, dtypes and shapes from a safetensors header; reads no tensor data.

    Raises CheckpointFileError when the header is damaged, a tensor's byte range does not
    fit its shape, or the file is shorter than its header promises (an interrupted download).
    """
    with open(path, "rb") as f:
        head = f.read(8)
        size = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < size <= MAX_HEADER_BYTES:
            raise CheckpointFileError(f"{path} is not a safetensors file (no valid header length)")
        try:
            header = json.loads(f.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CheckpointFileError(f"{path} has a damaged safetensors header") from None
    header.pop("__metadata__", None)
    tensors, data_end = {}, 0
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
            expected = math.prod(shape) * DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError):
            raise CheckpointFileError(f"{path}: header entry {name} is malformed") from None
        if end - begin != expected:
            raise CheckpointFileError(f"{path}: {name} spans {end - begin} bytes, its shape needs {expected}")
        tensors[name], data_end = Tensor(dtype, shape, expected), max(data_end, end)
    need = 8 + size + data_end
    have = path.stat().st_size
    if have < need:
        raise CheckpointFileError(f"{path} is truncated: {have} bytes, its header needs {need} "
                                  f"(download it again)")
    return tensors


class _ShapesOnly(pickle.Unpickler):
    """Unpickles a torch state dict into {name: shape} without touching its storages."""

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            import collections
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor_v3"):
            return lambda storage, offset, size, *rest: tuple(size)
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, *rest: data
        if module == "torch":       # storage types and dtypes: their names are enough
            return name
        raise pickle.UnpicklingError(f"unexpected {module}.{name}")

    def persistent_load(self, pid):
        return pid


def pth_shapes(path: Path) -> dict[str, Shape]:
    """{name: shape} of a torch.save'd state dict (zip format), from its pickle alone."""
    try:
        with zipfile.ZipFile(path) as z:
            (pkl,) = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            state = _ShapesOnly(z.open(pkl)).load()
    except (zipfile.BadZipFile, ValueError, pickle.UnpicklingError, EOFError):
        raise CheckpointFileError(f"{path} is not a torch state dict file (zip format)") from None
    if not isinstance(state, dict):
        raise CheckpointFileError(f"{path} does not hold a state dict")
    return {k: v for k, v in state.items() if isinstance(v, tuple)}


# ── comparing ─────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class FileCheck:
    name: str                # the file (or group) this line is about
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def _names(items, limit: int = 6) -> str:
    items = list(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def compare(found: dict[str, Shape], expected: dict[str, Shape]) -> list[str]:
    """Problems, each naming its tensors: missing, unexpected, wrong shape."""
    problems = []
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [f"{k} {found[k]} (expected {expected[k]})" for k in expected
             if k in found and tuple(found[k]) != tuple(expected[k])]
    if missing:
        problems.append(f"{len(missing)} missing: {_names(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_names(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} wrong shape: {_names(wrong, 3)}")
    return problems


def _gb(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.2f} GB"


def check_shard(path: Path, weight_map: dict[str, str], expected: dict[str, Shape]):
    """(its line, its header or None when unreadable). Tensors missing from every shard are
    named once, on the transformer line, not here."""
    try:
        header = safetensors_header(path)
    except FileNotFoundError:
        return FileCheck(path.name, False, "missing (listed in the index)"), None
    except CheckpointFileError as e:
        return FileCheck(path.name, False, str(e).removeprefix(str(path)).lstrip(": ")), None
    shapes = {k: t.shape for k, t in header.items()}
    problems = compare(shapes, {k: expected[k] for k in shapes if k in expected})
    listed = {k for k, v in weight_map.items() if v == path.name}
    for what, names in (("in the index but not in this file", listed - set(header)),
                        ("in this file but indexed elsewhere", {k for k in header if weight_map.get(k, path.name) != path.name})):
        if names:
            problems.append(f"{len(names)} {what}: {_names(sorted(names))}")
    not_float = [k for k, t in header.items() if t.dtype not in FLOAT_DTYPES]
    if not_float:
        problems.append(f"{len(not_float)} not floating point: {_names(not_float)}")
    dtypes = "/".join(sorted({t.dtype for t in header.values()}))
    return FileCheck(path.name, not problems, "; ".join(problems) or f"{len(header)} tensors, "
                     f"{_gb(sum(t.nbytes for t in header.values()))} {dtypes}, all as expected"), header


def check_transformer(base: Path) -> tuple[list[FileCheck], dict]:
    """config.json, the index and every shard; returns the lines and the config used."""
    lines = []
    try:
        config = json.loads((base / CONFIG).read_text())
    except FileNotFoundError:
        return [FileCheck(CONFIG, False, f"missing in {base}")], {}
    except json.JSONDecodeError:
        return [FileCheck(CONFIG, False, "not valid JSON")], {}
    c = INIT_DEFAULTS | config
    expected = transformer_tensors(config)
    differs = [f"{k} {c[k]} (Wan2.2-S2V-14B: {v})" for k, v in WAN_S2V_14B.items() if c[k] != v]
    lines.append(FileCheck(CONFIG, not differs, _names(differs, 3) if differs else
                           f"{c.get('_class_name', 'WanModel_S2V')}, dim {c['dim']}, {c['num_layers']} layers × "
                           f"{c['num_heads']} heads, ffn {c['ffn_dim']}, audio injected after "
                           f"{len(c['audio_inject_layers'])} blocks"))
    try:
        index = json.loads((base / INDEX).read_text())
        weight_map = index["weight_map"]
    except FileNotFoundError:
        lines.append(FileCheck(INDEX, False, f"missing in {base}"))
        return lines, config
    except (json.JSONDecodeError, KeyError, TypeError):
        lines.append(FileCheck(INDEX, False, "not a safetensors index (no weight_map)"))
        return lines, config
    shards = sorted(set(weight_map.values()))
    declared = index.get("metadata", {}).get("total_size")
    lines.append(FileCheck(INDEX, True, f"{len(weight_map)} tensors in {len(shards)} shards"
                           + (f", {_gb(declared)}" if declared else "")))
    found, total, unreadable = {}, 0, set()
    for shard in shards:
        check, header = check_shard(base / shard, weight_map, expected)
        lines.append(check)
        if header is None:
            unreadable.add(shard)
            continue
        found |= {k: t.shape for k, t in header.items()}
        total += sum(t.nbytes for t in header.values())
    unchecked = [k for k in expected if k not in found and weight_map.get(k) in unreadable]
    missing = [k for k in expected if k not in found and k not in unchecked]
    problems = [f"{len(missing)} missing: {_names(missing)}"] if missing else []
    if unchecked:
        problems.append(f"{len(unchecked)} unchecked in {len(unreadable)} unreadable shard(s)")
    if declared is not None and not unreadable and declared != total:
        problems.append(f"the index says {declared} bytes, the shards hold {total}")
    matched = sum(1 for k, s in expected.items() if found.get(k) == s)
    lines.append(FileCheck(f"transformer ({len(shards)} shards)", not problems and matched == len(expected),
                           "; ".join(problems) or f"{matched}/{len(expected)} tensors matched, "
                                                  f"{parameters(expected) / 1e9:.3f} B parameters"))
    return lines, config


def peft_name(key: str) -> str:
    """A LoRA file's key as the PEFT-wrapped model names it. The reference loader prefixes
    base_model.model. when the file does not; PEFT's saved form drops the adapter name."""
    key = key if key.startswith(PEFT_PREFIX) else PEFT_PREFIX + key
    for ab in ("lora_A", "lora_B"):
        key = key.replace(f".{ab}.weight", f".{ab}.default.weight")
    return key


def check_lora(path: Path, transformer: dict[str, Shape]) -> FileCheck:
    """liveavatar.safetensors against the adapter PEFT builds over `transformer`."""
    try:
        header = safetensors_header(path)
    except FileNotFoundError:
        return FileCheck(path.name, False, f"missing: {path}")
    except CheckpointFileError as e:
        return FileCheck(path.name, False, str(e))
    shapes = {peft_name(k): t.shape for k, t in header.items()}
    ranks = sorted({s[0] for k, s in shapes.items() if ".lora_A." in k})
    rank = ranks[0] if len(ranks) == 1 else LORA_RANK
    problems = compare(shapes, lora_tensors(transformer, rank))
    if rank != LORA_RANK:
        problems.insert(0, f"rank {rank}, Live Avatar's is {LORA_RANK}")
    layers = len(lora_targets(transformer))
    return FileCheck(path.name, not problems, "; ".join(problems) or
                     f"{len(header)} tensors: rank {rank} (alpha {LORA_ALPHA}) on {layers} layers, all as expected")


def check_pth(path: Path, expected: dict[str, Shape], what: str) -> FileCheck:
    try:
        shapes = pth_shapes(path)
    except FileNotFoundError:
        return FileCheck(path.name, False, f"missing in {path.parent}")
    except CheckpointFileError as e:
        return FileCheck(path.name, False, str(e))
    problems = compare(shapes, expected)
    return FileCheck(path.name, not problems, "; ".join(problems) or
                     f"{what}: {len(shapes)} tensors, {parameters(shapes) / 1e6:,.1f} M parameters, all as expected")


def check_wav2vec2(folder: Path) -> FileCheck:
    """The speech encoder folder: config, preprocessor, weights; 25 hidden states of 1024."""
    name = folder.name + "/"
    # Wav2Vec2Processor wants the feature extractor and the CTC tokenizer beside the model
    missing = [f for f in ("config.json", "preprocessor_config.json", "vocab.json") if not (folder / f).is_file()]
    weights = [f for f in ("model.safetensors", "pytorch_model.bin") if (folder / f).is_file()]
    if not folder.is_dir():
        return FileCheck(name, False, f"missing in {folder.parent}")
    if missing or not weights:
        return FileCheck(name, False, "missing " + ", ".join(missing + ([] if weights else ["model.safetensors"])))
    try:
        cfg = json.loads((folder / "config.json").read_text())
        layers, width = cfg["num_hidden_layers"], cfg["hidden_size"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return FileCheck(name, False, "config.json lacks num_hidden_layers / hidden_size")
    if (layers + 1, width) != (AUDIO_LAYERS, 1024):
        return FileCheck(name, False, f"{layers} layers × {width}; Live Avatar mixes {AUDIO_LAYERS} hidden "
                                      f"states of 1024 (wav2vec2-large-xlsr-53-english)")
    detail = f"{layers} layers × {width} ({layers + 1} hidden states), {weights[0]}"
    if weights[0].endswith(".safetensors"):
        try:
            header = safetensors_header(folder / weights[0])
        except CheckpointFileError as e:
            return FileCheck(name, False, str(e))
        detail += f" ({len(header)} tensors, {parameters({k: t.shape for k, t in header.items()}) / 1e6:.1f} M)"
    return FileCheck(name, True, detail)


def check_liveavatar(base: str | Path, lora: str | Path) -> list[FileCheck]:
    """One line per file of the base directory and the LoRA, then the transformer total."""
    base = Path(base)
    if not base.is_dir():
        return [FileCheck(str(base), False, "not a directory (avatar.checkpoint must be the Wan2.2-S2V-14B "
                                            "folder for Live Avatar)")]
    lines, config = check_transformer(base)
    transformer = transformer_tensors(config or WAN_S2V_14B)
    lines.append(check_lora(Path(lora), transformer) if str(lora) else
                 FileCheck("liveavatar.safetensors", False, "avatar.lora is empty: point it at liveavatar.safetensors"))
    lines.append(check_pth(base / VAE, vae_tensors(), "Wan2.1 VAE"))
    lines.append(check_pth(base / T5, t5_tensors(), "umT5-XXL encoder"))
    lines.append(check_wav2vec2(base / WAV2VEC2))
    return lines


def verdict(lines: list[FileCheck]) -> str:
    bad = [c.name for c in lines if not c.ok]
    if bad:
        return f"verdict: NOT USABLE — {len(bad)} of {len(lines)} checks failed ({_names(bad, 4)})"
    return f"verdict: OK — every file and tensor of the Live Avatar checkpoint is as the reference expects"


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(description="Check a Live Avatar checkpoint from its file headers alone.")
    p.add_argument("--checkpoint", required=True, help="the Wan2.2-S2V-14B directory")
    p.add_argument("--lora", required=True, help="liveavatar.safetensors")
    args = p.parse_args(argv)
    lines = check_liveavatar(args.checkpoint, args.lora)
    print("\n".join(c.line() for c in lines))
    print(verdict(lines))
    return 0 if all(c.ok for c in lines) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""transformers' UMT5EncoderModel with Wan's umT5 weights renamed equals Wan's T5Encoder
(fixture from tools/liveavatar_fixture_dit.py: a tiny T5Encoder, every weight random)."""
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from avatar_engine.causal_dit.text_encoder import (TextEncoderError, UMT5PromptEncoder, clean_prompt,
                                                   umt5_config, wan_t5_state_dict)

FIXTURE = Path(__file__).parent / "fixtures" / "liveavatar" / "dit" / "t5.safetensors"


def tiny_encoder():
    from transformers import UMT5EncoderModel

    with safe_open(str(FIXTURE), "pt") as f:
        cfg = json.loads(f.metadata()["t5_config"])
    case = load_file(FIXTURE)
    wan = {k[len("weight."):]: v for k, v in case.items() if k.startswith("weight.")}
    model = UMT5EncoderModel(umt5_config(vocab_size=cfg["vocab"], d_model=cfg["dim"],
                                         d_kv=cfg["dim_attn"] // cfg["num_heads"], d_ff=cfg["dim_ffn"],
                                         num_heads=cfg["num_heads"], num_layers=cfg["num_layers"],
                                         relative_attention_num_buckets=cfg["num_buckets"]))
    model.load_state_dict(wan_t5_state_dict(wan), strict=True)
    return UMT5PromptEncoder(model.eval()), case


def test_umt5_states_equal_wan_t5():
    encoder, case = tiny_encoder()
    states = encoder.encode_ids(case["ids"])
    assert states.shape == case["states"].shape == (21, 32)
    assert (states - case["states"]).abs().max().item() <= 1e-5


def test_unknown_key_is_one_line():
    with pytest.raises(TextEncoderError, match="not a key"):
        wan_t5_state_dict({"blocks.0.attn.qkv.weight": torch.zeros(1)})


def test_missing_files_are_one_line(tmp_path):
    with pytest.raises(TextEncoderError, match="models_t5_umt5-xxl-enc-bf16.pth is missing"):
        UMT5PromptEncoder.load(tmp_path)


def test_prompt_cleaning_collapses_whitespace_and_entities():
    assert clean_prompt("  A  woman&amp;her\\n dog\n\t talks ") == "A woman&her\\n dog talks"

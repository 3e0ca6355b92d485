"""The bundled LLMs: parts joined once into the cache and checked against their sha256 (a
fake part set for the refusal path, then the real default), and how a model is chosen."""
from __future__ import annotations

import dataclasses
import hashlib

import pytest

import assets
from agent.llm_server import LLMServerError, LocalLLMServer


def fake_split_model(root, monkeypatch, chunks: list[bytes], *, sha256: str | None = None) -> assets.SplitGGUF:
    """Installed-looking part packages `fakemodel_part1` …: part i holds data/part<ii>.bin."""
    for i, chunk in enumerate(chunks, 1):
        data = root / f"fakemodel_part{i}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        (data / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(root))
    whole = b"".join(chunks)
    return assets.SplitGGUF("Fake model GGUF", "fake.gguf", "fakemodel-part", len(chunks),
                            sha256 or hashlib.sha256(whole).hexdigest())


def test_parts_are_joined_once_and_verified(tmp_path, monkeypatch):
    chunks = [b"GGUF" + bytes(range(256)) * 40, b"middle" * 1000, b"end"]
    model = fake_split_model(tmp_path / "site", monkeypatch, chunks)
    path = model.path(tmp_path / "cache")
    assert path.read_bytes() == b"".join(chunks)
    assert not list((tmp_path / "cache").glob("*.partial"))
    stamp_before = path.stat().st_mtime_ns
    assert model.path(tmp_path / "cache") == path and path.stat().st_mtime_ns == stamp_before  # reused
    path.write_bytes(b"tampered after the check")  # the stamp no longer fits: joined anew
    assert model.path(tmp_path / "cache").read_bytes() == b"".join(chunks)


def test_a_hash_mismatch_is_refused_in_one_line(tmp_path, monkeypatch):
    model = fake_split_model(tmp_path / "site", monkeypatch, [b"GGUF-part-one", b"part-two"], sha256="0" * 64)
    with pytest.raises(assets.MissingAsset) as e:
        model.path(tmp_path / "cache")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("Fake model GGUF is corrupt (sha256 ")
    assert message.endswith("expected 0000000000000000…): pip install --force-reinstall fakemodel-part1 fakemodel-part2")
    assert not (tmp_path / "cache" / "fake.gguf").exists()  # nothing corrupt is kept
    assert not list((tmp_path / "cache").glob("fake.gguf*"))


def test_a_missing_part_names_every_package(tmp_path, monkeypatch):
    model = fake_split_model(tmp_path / "site", monkeypatch, [b"a", b"b"])
    model = dataclasses.replace(model, parts=3)
    with pytest.raises(assets.MissingAsset, match=r"^Fake model GGUF is missing: pip install fakemodel-part1 "
                                                  r"fakemodel-part2 fakemodel-part3$"):
        model.path(tmp_path / "cache")


def test_the_default_model_is_the_real_verified_gguf(cfg):
    split = {m.pips[0]: m for m in (assets.QWEN_CODER_05B, assets.QWEN_CODER_15B)}
    package, _ = assets.LOCAL_LLMS[cfg.llm.model]
    path = assets.llm_gguf(cfg.llm.model)
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
        assert int.from_bytes(f.read(4), "little") == 3  # GGUF v3
    model = split[package]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    assert digest.hexdigest() == model.sha256


def test_an_unknown_model_lists_the_bundled_ones(cfg):
    with pytest.raises(assets.MissingAsset, match=r"^no bundled LLM 'llama-70b' \(bundled: qwen2.5-coder-1.5b, "
                                                  r"qwen2.5-coder-0.5b, gemma-3-270m, smollm2-135m\)"):
        LocalLLMServer.from_config(dataclasses.replace(cfg.llm, model="llama-70b"))


def test_a_base_model_cannot_be_asked_to_chat(cfg):
    with pytest.raises(LLMServerError, match=r"^gemma-3-270m is a base model without a chat template: "
                                             r"set llm.api: completions"):
        LocalLLMServer.from_config(dataclasses.replace(cfg.llm, model="gemma-3-270m", api="chat"))

"""Live Avatar's wav2vec2 front end and streaming Wan2.1 VAE equal the reference code's outputs.

The fixture (tools/liveavatar_fixture_audio_vae.py) holds a tiny random wav2vec2 and Wan2.1
VAE in the published file layouts, a 2.3 s speech-like file, and what the reference modules
of Alibaba-Quark/LiveAvatar output for them on CPU in float32.
"""
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file

from avatar_engine.causal_dit.audio import AudioEncoderError
from avatar_engine.causal_dit.wan_vae import (LiveAvatarDecodeStream, WanVAE, WanVAEError, diffusers_state_dict)
from avatar_engine.causal_dit.wav2vec_features import Wav2VecBlockStream, Wav2VecFeatures, video_frames

FIXTURE = Path(__file__).parent / "fixtures" / "liveavatar" / "audio_vae"
# float32 through the VAE's dozens of convolutions: another CPU's kernels sum in another
# order (1.6e-5 apart on an AVX-512 Xeon, outputs of size ~2); a missing cache is >1e-2.
TOL = 1e-4

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def reference():
    return load_file(FIXTURE / "reference.safetensors")


@pytest.fixture(scope="module")
def speech():
    wave, rate = soundfile.read(FIXTURE / "speech.wav", dtype="float32")
    assert rate == 16000
    return wave


@pytest.fixture(scope="module")
def wav2vec():
    return Wav2VecFeatures(FIXTURE)


@pytest.fixture(scope="module")
def vae():
    return WanVAE.load(FIXTURE)


def max_diff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def test_wav2vec_layers_at_30_fps_match_reference(wav2vec, speech, reference):
    features = wav2vec.layer_features(speech)
    diff = max_diff(features, reference["audio_layers_30fps"])
    print(f"wav2vec2 25 layers at 30 fps vs reference: max abs diff {diff:.1e}")
    assert wav2vec.layers == 25 and features.shape == (25, 68, 32)
    assert diff <= TOL


def test_wav2vec_video_frames_match_reference(wav2vec, speech, reference):
    frames = wav2vec.video_features(speech)                      # (1, 25, D, 2 clips · 48)
    diff = max_diff(frames, reference["audio_emb"])
    print(f"wav2vec2 features at 25 fps in clips of 48 vs reference: max abs diff {diff:.1e}")
    assert frames.shape[-1] == 48 * int(reference["audio_clips"])
    assert diff <= TOL
    # 2.3 s of audio fill 57 frames; the reference pads the rest of the clip with zeros
    assert frames[..., :57].abs().amax(dim=(0, 1, 2)).min() > 0 and frames[..., 57:].abs().max() == 0


def test_block_stream_is_the_whole_file_path_over_a_bounded_window(wav2vec, speech):
    frame = 640                                                   # samples per 25 fps frame
    block = 12 * frame
    stream = Wav2VecBlockStream(wav2vec, context_s=1.2)          # 30 frames of context
    blocks = [stream.push(speech[i:i + block]) for i in range(0, 4 * block, block)]
    assert all(b.shape == (1, 25, 32, 12) for b in blocks)
    # block 1 still sees all the audio so far: the whole-file path on that prefix, except that
    # its last frame (past the last 30 Hz feature) holds the last feature instead of a zero
    prefix = wav2vec.layer_features(speech[:2 * block])
    expected = video_frames(prefix, 24, hold_last=True)[..., 12:]
    assert max_diff(blocks[1], expected) <= TOL
    assert max_diff(blocks[1][..., :-1], video_frames(prefix, 24)[..., 12:-1]) <= TOL
    assert video_frames(prefix, 24)[..., -1].abs().max() == 0 < blocks[1][..., -1].abs().max()
    # block 3 sees only the last 30 frames: audio before them no longer matters
    window = wav2vec.layer_features(speech[4 * block - 30 * frame:4 * block])
    assert max_diff(blocks[3], video_frames(window, 30, hold_last=True)[..., -12:]) <= TOL
    fresh = Wav2VecBlockStream(wav2vec, context_s=1.2)
    fresh.push(np.zeros(3 * block, np.float32))                  # another history, pushed out of the window
    fresh.push(speech[4 * block - 30 * frame:3 * block])
    assert max_diff(fresh.push(speech[3 * block:4 * block]), blocks[3]) <= TOL
    with pytest.raises(ValueError, match="whole video frames of 640 samples"):
        stream.push(speech[:1000])
    with pytest.raises(ValueError, match="too short: wav2vec2 features need at least 720"):
        wav2vec.layer_features(speech[:700])


def test_vae_encodes_reference_image_and_motion_video(vae, reference):
    image = reference["ref_image"]                                # (1, 3, 1, 16, 32)
    diff_ref = max_diff(vae.encode(image), reference["ref_latents"])
    diff_motion = max_diff(vae.encode(image.repeat(1, 1, 73, 1, 1)), reference["motion_latents"])
    print(f"Wan VAE encode vs reference: image {diff_ref:.1e}, 73-frame motion video {diff_motion:.1e}")
    assert diff_ref <= TOL and diff_motion <= TOL


def test_vae_stream_decode_matches_reference_over_warmup_and_four_blocks(vae, reference):
    decoder = vae.stream()
    diffs = [max_diff(decoder.decode(reference["motion_latents"][:, :, :7], clamp=False),
                      reference["stream_raw_warmup"])]
    diffs += [max_diff(decoder.decode(reference["block_latents"][i], clamp=False), reference[f"stream_raw_{i}"])
              for i in range(4)]
    print("Wan VAE stream decode vs reference, warm-up then 4 blocks: " + " ".join(f"{d:.1e}" for d in diffs))
    assert max(diffs) <= TOL

    pipeline = LiveAvatarDecodeStream(vae)
    pipeline.warm_up(reference["motion_latents"])
    frames = [pipeline.decode_block(reference["block_latents"][i]) for i in range(4)]
    assert [f.shape[2] for f in frames] == [9, 12, 12, 12]
    assert max(max_diff(f, reference[f"stream_frames_{i}"]) for i, f in enumerate(frames)) <= TOL


def test_vae_stream_needs_its_cache_and_warm_up(vae, reference):
    blocks = reference["block_latents"]
    warm = vae.stream()
    warm.decode(reference["motion_latents"][:, :, :7])
    together = warm.decode(torch.cat(list(blocks), 2), clamp=False)          # one call, 12 latents
    assert max_diff(together[:, :, :12], reference["stream_raw_0"]) <= TOL
    assert max_diff(together[:, :, 36:], reference["stream_raw_3"]) <= TOL
    cold = vae.stream()                                                     # no warm-up
    assert cold.decode(blocks[0], clamp=False).shape[2] == 9                # the first latent → 1 frame
    assert max_diff(cold.decode(blocks[1], clamp=False), reference["stream_raw_1"]) > 1e-2
    fresh = vae.stream()
    fresh.decode(reference["motion_latents"][:, :, :7])
    fresh.decode(blocks[0])
    fresh.reset()                                                           # reset forgets the stream
    assert fresh.decode(blocks[1], clamp=False).shape[2] == 9


def test_vae_checkpoint_keys_convert_one_to_one(tmp_path):
    reference = torch.load(FIXTURE / "Wan2.1_VAE.pth", weights_only=True)
    converted = diffusers_state_dict(reference)
    assert len(converted) == len(reference) == 194
    assert converted["decoder.up_blocks.0.upsamplers.0.time_conv.weight"] is reference["decoder.upsamples.3.time_conv.weight"]
    assert converted["decoder.up_blocks.3.resnets.2.conv2.weight"] is reference["decoder.upsamples.14.residual.6.weight"]
    assert converted["decoder.mid_block.attentions.0.to_qkv.weight"] is reference["decoder.middle.1.to_qkv.weight"]
    # a wrongly shaped or renamed key is reported by name, in one line
    weight = reference.pop("decoder.upsamples.3.time_conv.weight")
    torch.save(reference | {"decoder.upsamples.3.time_conv.weight": weight[:, :, :2]}, tmp_path / "Wan2.1_VAE.pth")
    with pytest.raises(WanVAEError, match=r"size mismatch for decoder\.upsamples\.3\.time_conv\.weight") as err:
        WanVAE.load(tmp_path)
    assert "\n" not in str(err.value)
    torch.save(reference | {"decoder.upsamples.3.time_conv.weights": weight}, tmp_path / "Wan2.1_VAE.pth")
    with pytest.raises(WanVAEError, match=r'Unexpected key.*"decoder\.upsamples\.3\.time_conv\.weights"') as err:
        WanVAE.load(tmp_path)
    assert "\n" not in str(err.value)


def test_full_size_vae_layout_converts_onto_diffusers_shape_for_shape():
    from diffusers import AutoencoderKLWan

    from avatar_engine.causal_dit.liveavatar_files import vae_tensors
    with torch.device("meta"):
        model = AutoencoderKLWan(base_dim=96, z_dim=16)
    published = vae_tensors()                      # Wan2.1_VAE.pth's keys and shapes at full size
    assert diffusers_state_dict(published) == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 126.9


def test_missing_files_are_one_line_with_what_to_download(tmp_path):
    with pytest.raises(WanVAEError) as err:
        WanVAE.load(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'Wan2.1_VAE.pth'} not found: download Wan2.1_VAE.pth from")
    assert "Wan-AI/Wan2.2-S2V-14B" in message and f"put it in {tmp_path}" in message and "\n" not in message

    with pytest.raises(AudioEncoderError, match=r"wav2vec2-large-xlsr-53-english not found: download"):
        Wav2VecFeatures(tmp_path)
    shutil.copytree(FIXTURE / "wav2vec2-large-xlsr-53-english", tmp_path / "wav2vec2-large-xlsr-53-english")
    (tmp_path / "wav2vec2-large-xlsr-53-english" / "preprocessor_config.json").unlink()
    with pytest.raises(AudioEncoderError, match=r"preprocessor_config.json not found: download .* put it in"):
        Wav2VecFeatures(tmp_path)
    (tmp_path / "wav2vec2-large-xlsr-53-english" / "model.safetensors").unlink()
    shutil.copy(FIXTURE / "wav2vec2-large-xlsr-53-english" / "preprocessor_config.json",
                tmp_path / "wav2vec2-large-xlsr-53-english")
    with pytest.raises(AudioEncoderError, match=r"model.safetensors not found"):
        Wav2VecFeatures(tmp_path)

"""Training on a real video file: a clip with sound is cropped, scaled, brought to 25 fps
and 16 kHz, cut to whole blocks, and its talk mask comes from the VAD; the training entry
point takes it and writes a checkpoint the backend loads."""
import math

import numpy as np
import pytest

from avatar_engine.causal_dit.audio import TALK_BIT
from avatar_engine.causal_dit.checkpoint import load_checkpoint
from avatar_engine.causal_dit.clips import ClipError, load_clip
from avatar_engine.causal_dit.synthetic import talking_clip
from avatar_engine.causal_dit.train import main as train
from avatar_engine.media import MP4Writer
from speech import synthetic

SR, BLOCK = 16000, 12
LEAD_S, FILE_FPS = 1.0, 30   # silence before the speech; the file is not at 25 fps


@pytest.fixture(scope="module")
def video(tmp_path_factory, tts):
    """A 48×64 (portrait-shaped) 30 fps MP4: 1 s of silence, a sentence, 1 s of silence."""
    speech = synthetic.say(tts, "The moon always shows us the same face.", SR)
    audio = np.concatenate([np.zeros(int(LEAD_S * SR), np.float32), speech, np.zeros(SR, np.float32)])
    n = int(len(audio) / SR * FILE_FPS)
    frames, _, _ = talking_clip(n, size=64)
    path = tmp_path_factory.mktemp("clip") / "talk.mp4"
    with MP4Writer(path, FILE_FPS, 48, 64, SR) as writer:
        writer.write(frames[:, :, 8:56], audio[: n * SR // FILE_FPS])
    onset, end = synthetic.speech_bounds(speech, SR)
    return path, LEAD_S + onset, LEAD_S + end, len(audio) / SR


def test_a_video_becomes_whole_blocks_at_25_fps_with_a_talk_mask_from_the_vad(video):
    path, speech_on, speech_off, seconds = video
    frames, audio, mask = load_clip(path, size=32, seconds=30, block=BLOCK)
    assert frames.shape[1:] == (32, 32, 3) and frames.dtype == np.uint8
    assert len(frames) % BLOCK == 0 and seconds * 25 - 2 * BLOCK < len(frames) <= math.ceil(seconds * 25)  # a last frame may start just before the end
    assert len(audio) == len(frames) * SR // 25 and len(mask) == len(frames)
    t = np.arange(len(frames)) / 25
    talking = (mask & TALK_BIT) > 0
    # the speech is marked, within the VAD's padding; the silence around it is not
    assert talking[(t > speech_on + 0.2) & (t < speech_off - 0.2)].all()
    assert not talking[t < speech_on - 0.3].any() and not talking[t > speech_off + 0.5].any()


def test_seconds_bounds_what_is_read(video):
    frames, audio, mask = load_clip(video[0], size=16, seconds=1.0, block=BLOCK)
    assert len(frames) == 24 and frames.shape[1:] == (16, 16, 3) and len(audio) == 24 * SR // 25


def test_the_entry_point_trains_on_a_video_and_the_backend_loads_it(video, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    train(["--clip", str(video[0]), "--out", str(out), "--seconds", "2", "--dit-steps", "2", "--vae-steps", "2",
           "--threads", "1"])
    assert "clip: 48 frames of 32×32" in capsys.readouterr().out
    model, vae, stream = load_checkpoint(out)
    assert model is not None and vae is not None


@pytest.mark.parametrize("content, message", [
    (b"not a video at all", "not a video with sound that can be read"),
    (None, "no such file"),
])
def test_an_unusable_file_is_one_clear_line(tmp_path, content, message):
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ClipError) as e:
        load_clip(path, size=32, seconds=8, block=BLOCK)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_clip_shorter_than_a_block_is_refused(tmp_path):
    path = tmp_path / "short.mp4"
    with MP4Writer(path, 25, 32, 32, SR) as writer:
        writer.write(np.zeros((5, 32, 32, 3), np.uint8), np.zeros(5 * SR // 25, np.float32))
    with pytest.raises(ClipError, match="shorter than one block"):
        load_clip(path, size=32, seconds=8, block=BLOCK)


def test_packed_integer_stereo_sound_is_read_at_its_true_level(tmp_path):
    """PCM s16 stereo in Matroska (packed samples, 44.1 kHz, 30 fps): one mono signal at
    the right level and length, not two channels interleaved or integers clipped."""
    import av
    path, rate, seconds = tmp_path / "clip.mkv", 44100, 2.0
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate) * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=30)
        video.width = video.height = 32
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("pcm_s16le", rate=rate, layout="stereo")
        for i in range(int(seconds * 30)):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 4 % 256, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode())
        for start in range(0, len(tone), 1024):
            piece = tone[start:start + 1024]
            frame = av.AudioFrame.from_ndarray(np.repeat(piece, 2)[None], format="s16", layout="stereo")
            frame.sample_rate, frame.pts = rate, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode())
    frames, sound, _ = load_clip(path, size=16, seconds=8, block=BLOCK)
    assert len(frames) == 48 and len(sound) == 48 * SR // 25
    assert 0.45 < np.abs(sound).max() < 0.55 and abs(np.sqrt(np.mean(sound ** 2)) - 0.5 / np.sqrt(2)) < 0.03

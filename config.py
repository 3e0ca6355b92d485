"""Typed configuration: `config.yaml` → nested frozen dataclasses, validated once at start.

Every tunable of the product lives in `config.yaml`. Each section is a dataclass below;
fields declare their allowed values with `number(...)`, `choice(...)` or a plain default.
`load_config` fails fast with one line naming the bad key and what is allowed:

    config.yaml: vad.threshold must be a number in [0.0, 1.0], got 1.7

Environment variables override secrets only: a section names the variable that holds an
API key (`api_key_env`), and `secret(name)` reads it when a client is built. Secrets are
never stored in the config object, so they cannot be echoed by logging it.
"""
from __future__ import annotations

import dataclasses
import os
import ssl
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_PATH = Path(__file__).with_name("config.yaml")


class ConfigError(ValueError):
    """A config problem, phrased as one line for the user."""


def number(default, lo=None, hi=None):
    """A numeric field with an inclusive allowed range."""
    return field(default=default, metadata={"range": (lo, hi)})


def choice(default, *options):
    """A string field restricted to `options` (default first)."""
    return field(default=default, metadata={"choices": (default, *options)})


def section(cls):
    """A nested section whose defaults are its dataclass defaults."""
    return field(default_factory=cls)


# ── sections ──────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = number(7860, 0, 65535)
    # STUN/TURN servers for WebRTC; empty keeps every connection on the local network.
    ice_servers: tuple[str, ...] = ()
    # Calls at once; each runs its own avatar renderer on the CPU.
    max_sessions: int = number(2, 1, 64)
    # The avatar's video to the browser (its size is avatar.size): h264 through libx264
    # ultrafast + zerolatency, less CPU per call than vp8 (docs/BENCHMARKS.md); vp8 for
    # a browser without H.264.
    video_codec: str = choice("h264", "vp8")
    # HTTPS: a PEM certificate and its key (both or neither). Browsers open the
    # microphone only on localhost or over HTTPS, so serving a LAN needs them.
    cert: str = ""
    key: str = ""
    # A recording (Record switch, two agents in the page) stops at this length.
    max_recording_s: float = number(900.0, 10.0, 7200.0)


@dataclass(frozen=True)
class AudioConfig:
    # The rate the speech stack works at (Silero VAD and Whisper both want 16 kHz).
    sample_rate: int = choice(16000, 8000)
    # Lowest and highest input rates accepted from microphones and files.
    min_input_rate: int = number(8000, 8000, 192000)
    max_input_rate: int = number(48000, 8000, 192000)


@dataclass(frozen=True)
class EchoGuardConfig:
    # reference: cancel the agent's own voice using what was played, then raise the bar;
    # threshold: only raise the bar while the agent plays; off: trust the VAD as is.
    mode: str = choice("reference", "threshold", "off")
    threshold_while_playing: float = number(0.7, 0.0, 1.0)
    # Speech this long over the agent's voice pauses it (a barge-in, or a backchannel).
    start_s_while_playing: float = number(0.15, 0.0, 5.0)
    # Speaker → mic delay searched for by the reference canceller.
    max_delay_s: float = number(0.25, 0.0, 1.0)
    filter_taps: int = number(64, 1, 512)
    # Window the canceller fits its filter over.
    fit_window_s: float = number(1.0, 0.1, 10.0)


@dataclass(frozen=True)
class VADConfig:
    threshold: float = number(0.5, 0.0, 1.0)
    # Speech shorter than start_s is not a turn; silence shorter than end_s does not end one.
    start_s: float = number(0.2, 0.0, 5.0)
    end_s: float = number(0.5, 0.05, 10.0)
    # Silence after which a reply is prepared (not yet spoken) in case the turn is over:
    # the answer is then ready sooner. Off when not below end_s.
    pause_s: float = number(0.25, 0.05, 10.0)
    # Audio kept before the detected onset and after the detected end of a turn.
    pad_s: float = number(0.1, 0.0, 2.0)
    # A turn longer than this is cut (bounded memory for someone who never stops).
    max_turn_s: float = number(60.0, 1.0, 600.0)
    echo_guard: EchoGuardConfig = section(EchoGuardConfig)


@dataclass(frozen=True)
class ASRConfig:
    # tiny.en: the smallest and fastest; base: multilingual Whisper base, read as English
    # (bench/asr.py compares them on voices that are not the agent's).
    model: str = choice("tiny.en", "base")
    compute_type: str = choice("int8", "int8_float32", "float32")
    # 5: on voices unlike Whisper's training data, fewer errors than greedy (1) for up
    # to 30 % more time: WER 14 -> 10 % dry, 30 -> 27 % in rooms (bench/asr.py).
    beam_size: int = number(5, 1, 10)
    threads: int = number(2, 1, 64)
    # Seconds of audio the encoder reads for a reply (a longer turn: the turn + 1 s).
    # Whisper was trained on 30 s windows, and that is what faster-whisper always pays
    # (30 here: its own pipeline); in much shorter windows it repeats itself (bench/asr.py).
    window_s: float = number(10.0, 1.0, 30.0)
    # Tell Whisper the persona's name and topic before each turn (spelling of names).
    hints: bool = True


@dataclass(frozen=True)
class TTSConfig:
    voice: str = "en_US-joe-medium"
    # >1 speaks slower, <1 faster.
    length_scale: float = number(1.0, 0.3, 3.0)
    volume: float = number(1.0, 0.0, 4.0)
    # ONNX Runtime threads for Piper. One leaves the other core to the LLM, which keeps
    # writing the next sentence while this one is synthesized.
    threads: int = number(1, 1, 64)


@dataclass(frozen=True)
class LLMConfig:
    # local: a bundled model (llm.model) under an embedded llama.cpp server; openai: any
    # OpenAI-compatible text endpoint at base_url.
    provider: str = choice("local", "openai")
    # chat: /v1/chat/completions with the model's chat template; completions: a few-shot
    # transcript for base models (the bundled gemma-3-270m needs it).
    api: str = choice("chat", "completions")
    base_url: str = ""
    # provider local: one of the bundled models (assets.LOCAL_LLMS): qwen2.5-coder-1.5b,
    # qwen2.5-coder-0.5b, gemma-3-270m, smollm2-135m. openai: the endpoint's model name.
    model: str = "qwen2.5-coder-1.5b"
    api_key_env: str = "LLM_API_KEY"
    max_tokens: int = number(60, 1, 4096)
    temperature: float = number(0.7, 0.0, 2.0)
    # llama.cpp's penalty on tokens of the last 64 (provider local; 1.0 is off). Hosted
    # endpoints keep their own sampling.
    repeat_penalty: float = number(1.1, 1.0, 2.0)
    timeout_s: float = number(20.0, 0.5, 600.0)
    context_tokens: int = number(2048, 256, 131072)
    threads: int = number(2, 1, 64)
    # 429 answers are retried this many times with backoff; other failures are not.
    max_retries: int = number(2, 0, 10)
    # The embedded server (provider local): 0 picks a free port on 127.0.0.1.
    port: int = number(0, 0, 65535)
    start_timeout_s: float = number(60.0, 1.0, 600.0)


@dataclass(frozen=True)
class OmniConfig:
    base_url: str = ""
    model: str = ""
    # Empty: each persona's own voice (prompts/*.yaml voice.omni, Qwen3-Omni names).
    # Set it to pin one voice for every persona, e.g. alloy for OpenAI audio models.
    voice: str = ""
    audio_format: str = choice("wav", "pcm16")
    output_sample_rate: int = number(24000, 8000, 48000)
    api_key_env: str = "OMNI_API_KEY"
    timeout_s: float = number(30.0, 0.5, 600.0)
    max_retries: int = number(3, 0, 10)
    # How user audio is embedded: plain base64 (OpenAI, vLLM) or a data URL (DashScope).
    input_audio: str = choice("base64", "data_url")


@dataclass(frozen=True)
class AgentConfig:
    # cascade: ASR → text LLM → TTS (the offline default); omni: speech in, speech out.
    mode: str = choice("cascade", "omni")
    persona: str = "ada"
    history_turns: int = number(8, 0, 200)
    # Approximate token budget of the history sent with each request.
    history_tokens: int = number(1024, 0, 131072)


@dataclass(frozen=True)
class TurnsConfig:
    # Speech over the agent's voice ducks it at once; then it is judged by its words
    # (ASR on the overlap: only backchannel words let the agent go on) or by duration.
    overlap: str = choice("words", "duration")
    # duration: speech over the agent longer than this is a barge-in, shorter a backchannel.
    backchannel_s: float = number(0.4, 0.0, 5.0)
    # Silence that ends a piece of speech over the agent, so it can be judged.
    backchannel_gap_s: float = number(0.3, 0.05, 2.0)
    # words: speech over the agent this long is a barge-in whatever it says.
    max_backchannel_s: float = number(2.0, 0.1, 10.0)  # VAD padding and room echo lengthen a 1.2 s "mm-hm"
    # words: a first look this far into the speech catches "wait, stop" said in one breath.
    first_look_s: float = number(0.6, 0.1, 5.0)
    # words: what a backchannel may consist of (hum-like sounds and laughs match by shape).
    backchannel_words: tuple[str, ...] = ("yeah", "yes", "yep", "yup", "okay", "ok", "right", "alright", "sure",
                                          "uh", "huh", "mhm", "i", "see", "got", "it", "oh", "wow", "cool",
                                          "nice", "great", "true", "exactly", "indeed", "totally", "really")
    # semantic: Smart Turn v3 ends a turn that sounds finished before vad.end_s, and a
    # turn whose words trail off waits for incomplete_end_s; silence: vad.end_s alone.
    end_of_turn: str = choice("semantic", "silence")
    complete_threshold: float = number(0.5, 0.0, 1.0)
    incomplete_end_s: float = number(1.5, 0.1, 10.0)
    threads: int = number(1, 1, 16)


@dataclass(frozen=True)
class AvatarConfig:
    backend: str = choice("portrait", "causal_dit")
    fps: int = number(25, 1, 60)
    # Blocks are shown once the mic has passed their end, so a block's length is added
    # to every latency: short blocks for the portrait (the diffusion model sets its own).
    frames_per_block: int = number(2, 1, 250)
    size: int = number(512, 64, 2048)
    # Empty: the persona's image, else the bundled astronaut portrait.
    image: str = ""
    # Animate a centred region when the reference has no detectable face.
    allow_no_face: bool = False
    # Blocks rendered ahead of playback.
    lookahead_blocks: int = number(2, 1, 32)
    seed: int = number(0, 0, 2**31 - 1)
    # causal_dit weights: a checkpoint file trained here, or the Wan2.2-S2V-14B directory of
    # the published Live Avatar model (then `lora` is its liveavatar.safetensors).
    checkpoint: str = ""
    lora: str = ""


@dataclass(frozen=True)
class CausalDiTConfig:
    # Inference knobs of the causal_dit backend; the model's own settings (block size,
    # window, cache mode, positions, steps) come with its checkpoint (avatar.checkpoint).
    # Speech encoder for the talk/listen branches: the bundled Whisper (offline) or a
    # local wav2vec2 directory; use the one the checkpoint was trained with.
    audio_encoder: str = choice("whisper", "wav2vec2")
    wav2vec2_dir: str = ""
    # Past audio the incremental encoder hears with each block, seconds.
    audio_context_s: float = number(3.0, 0.5, 30.0)
    threads: int = number(2, 1, 64)
    # Live Avatar on GPUs, planned before anything loads (sizing.liveavatar_plan): processes
    # (one GPU each) = N-1 step ranks + a VAE rank, or 1 for everything on one GPU; the
    # transformer's weight storage (fp8: float8_e4m3fn block matmuls); video size in pixels.
    ranks: int = number(1, 1, 5)
    weights: str = choice("bf16", "fp8")
    height: int = number(720, 64, 2048)
    width: int = number(400, 64, 2048)
    # Live Avatar's text prompt (the scene it animates), encoded once by umT5 and cached in
    # prompt_cache (empty: <avatar.checkpoint>/prompt_cache).
    prompt: str = ("A person talks to the camera with natural facial expressions and small head movements, "
                   "in a bright, static close-up shot.")
    prompt_cache: str = ""


@dataclass(frozen=True)
class Config:
    server: ServerConfig = section(ServerConfig)
    audio: AudioConfig = section(AudioConfig)
    vad: VADConfig = section(VADConfig)
    asr: ASRConfig = section(ASRConfig)
    tts: TTSConfig = section(TTSConfig)
    llm: LLMConfig = section(LLMConfig)
    omni: OmniConfig = section(OmniConfig)
    agent: AgentConfig = section(AgentConfig)
    turns: TurnsConfig = section(TurnsConfig)
    avatar: AvatarConfig = section(AvatarConfig)
    causal_dit: CausalDiTConfig = section(CausalDiTConfig)


# ── loading ───────────────────────────────────────────────────────────────────────────


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Read YAML at `path` (default: the repository's config.yaml) into a `Config`.

    `overrides` is a nested dict applied on top of the file (tests, CLI flags).
    Raises ConfigError with a one-line message on any problem.
    """
    path = Path(path) if path else DEFAULT_PATH
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file; pass --config PATH") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}; check indentation and colons") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    if overrides:
        raw = _merge(raw, overrides)
    try:
        return from_dict(Config, raw)
    except ConfigError as e:
        raise ConfigError(f"{path.name}: {e}") from None


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass `cls` from `data`, validating every key against the field specs."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key '{prefix}{unknown[0]}' (allowed: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        values[name] = _convert(hints[name], value, fields[name], prefix + name)
    return cls(**values)


def _convert(kind, value, f: dataclasses.Field, key: str):
    if dataclasses.is_dataclass(kind):
        return from_dict(kind, value if value is not None else {}, key + ".")
    origin = typing.get_origin(kind)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item,) = {a for a in typing.get_args(kind) if a is not Ellipsis}
        return tuple(_scalar(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    value = _scalar(kind, value, key)
    if "choices" in f.metadata and value not in f.metadata["choices"]:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, f.metadata['choices']))}, got {value!r}")
    if "range" in f.metadata:
        lo, hi = f.metadata["range"]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{key} must be a number in [{lo}, {hi}], got {value!r}")
    return value


def _scalar(kind, value, key: str):
    # bool is an int in Python; a YAML `yes` must not pass as a port number.
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    raise TypeError(f"unsupported config type for {key}: {kind}")


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def secret(env_var: str) -> str | None:
    """The value of a secret from the environment (API keys); None when unset or empty."""
    value = os.environ.get(env_var, "").strip()
    return value or None


def to_yaml(cfg: Config) -> str:
    """The full effective config as YAML (secrets are not part of it)."""
    def plain(x):
        if dataclasses.is_dataclass(x):
            return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
        return list(x) if isinstance(x, tuple) else x
    return yaml.safe_dump(plain(cfg), sort_keys=False)


def tls_files(server: ServerConfig) -> dict:
    """uvicorn's HTTPS arguments from server.cert / server.key (none: plain HTTP)."""
    if not server.cert and not server.key:
        return {}
    if not (server.cert and server.key):
        raise ConfigError("HTTPS needs both server.cert and server.key (--cert and --key)")
    for what, path in (("certificate", server.cert), ("key", server.key)):
        if not Path(path).is_file():
            raise ConfigError(f"HTTPS {what} {path}: no such file")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(server.cert, server.key)
    except (ssl.SSLError, ValueError) as e:
        raise ConfigError(f"HTTPS: {server.cert} and {server.key} are not a PEM certificate and its key ({e})") from None
    return {"ssl_certfile": server.cert, "ssl_keyfile": server.key}

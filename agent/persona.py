"""Personas as data: one YAML file per persona in `prompts/`, validated on load.

    name: Ada                         # how the persona calls itself
    system_prompt: You are Ada, ...
    greeting: Hi, I'm Ada! ...
    voice: {piper: en_US-joe-medium, pitch: 5, formant: 1.5, omni: Chelsie}
                                      # cascade TTS voice, its pitch and formants in
                                      # semitones (-6 … 6, optional; formants move with
                                      # the pitch unless set) / omni voice
    image: astronaut                  # or a path relative to prompts/
    examples:                         # few-shot turns: base models learn the style here
      - {user: ..., assistant: ...}

A persona also owns how its conversation is shown to a model: `chat_messages` for chat
APIs, `completion_prompt` (a few-shot `User:/Ada:` transcript) for base models. The
persona text comes first and never changes, so llama.cpp reuses its evaluated context.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from agent.history import History

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"
ASTRONAUT = "astronaut"
USER_LABEL = "User:"
# Beyond half an octave the shifted voice (pitch or formants) starts to sound like a cartoon.
MAX_PITCH = 6


class PersonaError(ValueError):
    """A persona file problem, phrased as one line for the user."""


@dataclass(frozen=True)
class Example:
    user: str
    assistant: str


@dataclass(frozen=True)
class Persona:
    id: str                  # the file name without .yaml; what config and CLI name
    name: str
    system_prompt: str
    greeting: str
    piper_voice: str
    omni_voice: str | None   # None: use omni.voice from the config
    voice_pitch: float       # semitones: one bundled Piper voice, several personas
    image: str               # "astronaut" or an absolute path
    voice_formant: float | None = None   # semitones (vocal tract); None: with the pitch
    examples: tuple[Example, ...] = ()

    def chat_messages(self, history: History) -> list[dict]:
        """System prompt, few-shot examples and history as chat messages."""
        messages = [{"role": "system", "content": self.system_prompt}]
        for ex in self.examples:
            messages += [{"role": "user", "content": ex.user}, {"role": "assistant", "content": ex.assistant}]
        for turn in history.turns:
            if turn.prompt_text:  # an omni user turn heard only as audio has no text
                messages.append({"role": "user" if turn.role == "user" else "assistant",
                                 "content": turn.prompt_text})
        return messages

    @property
    def agent_label(self) -> str:
        """The persona's lines in a base-model transcript: its own name, as the system
        prompt describes a conversation with it. With a generic `Assistant:` the model
        tended to begin its line with the name (`Juno: …`), or answer with the name alone."""
        return f"{self.name}:"

    def completion_prompt(self, history: History, user_text: str) -> str:
        """A transcript for a base model, ending where the agent's next line begins."""
        lines = [self.system_prompt.strip(), ""]
        for ex in self.examples:
            lines += [f"{USER_LABEL} {ex.user}", f"{self.agent_label} {ex.assistant}"]
        for turn in history.turns:
            if turn.prompt_text:
                lines.append(f"{USER_LABEL if turn.role == 'user' else self.agent_label} {turn.prompt_text}")
        lines += [f"{USER_LABEL} {user_text.strip()}", self.agent_label]
        return "\n".join(lines)


_FIELDS = ("name", "system_prompt", "greeting", "voice", "image", "examples")


def persona_ids(prompts_dir: Path = PROMPTS_DIR) -> list[str]:
    return sorted(p.stem for p in prompts_dir.glob("*.yaml"))


def load_persona(name_or_path: str | Path, prompts_dir: Path = PROMPTS_DIR) -> Persona:
    """A persona by id (`ada`) from `prompts_dir`, or from a YAML path. Raises PersonaError."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = prompts_dir / f"{name_or_path}.yaml"
        if not path.exists():
            raise PersonaError(f"no persona '{name_or_path}' in {prompts_dir} "
                               f"(available: {', '.join(persona_ids(prompts_dir)) or 'none'})")
    where = path.name
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PersonaError(f"{path}: no such persona file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise PersonaError(f"{where}: not valid YAML{f' at line {mark.line + 1}' if mark else ''}") from None
    if not isinstance(raw, dict):
        raise PersonaError(f"{where}: must be a mapping with keys {', '.join(_FIELDS)}")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise PersonaError(f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(_FIELDS)})")

    def text(d: dict, key: str, label: str, required: bool = True) -> str | None:
        value = d.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise PersonaError(f"{where}: {label} must be a non-empty string, got {value!r}")
        return value.strip()

    name, system_prompt, greeting = (text(raw, key, key) for key in ("name", "system_prompt", "greeting"))
    if ":" in name or f"{name}:" == USER_LABEL:  # it labels the persona's lines in a transcript
        raise PersonaError(f"{where}: name must not contain ':' or be 'User', got {name!r}")
    voice = raw.get("voice")
    if not isinstance(voice, dict) or set(voice) - {"piper", "pitch", "formant", "omni"}:
        raise PersonaError(f"{where}: voice must be a mapping with keys piper, pitch, formant and omni (optional), "
                           f"got {voice!r}")

    def semitones(key: str) -> float | None:
        value = voice.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not -MAX_PITCH <= value <= MAX_PITCH):
            raise PersonaError(f"{where}: voice.{key} must be a number of semitones in [-{MAX_PITCH}, {MAX_PITCH}], "
                               f"got {value!r}")
        return None if value is None else float(value)

    pitch, formant = semitones("pitch"), semitones("formant")
    examples = raw.get("examples") or []
    if not isinstance(examples, list):
        raise PersonaError(f"{where}: examples must be a list of {{user, assistant}} pairs")
    pairs = []
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict) or set(ex) != {"user", "assistant"}:
            raise PersonaError(f"{where}: examples[{i}] must have exactly the keys user and assistant")
        pairs.append(Example(text(ex, "user", f"examples[{i}].user"),
                             text(ex, "assistant", f"examples[{i}].assistant")))
    return Persona(
        id=path.stem,
        name=name,
        system_prompt=system_prompt,
        greeting=greeting,
        piper_voice=text(voice, "piper", "voice.piper"),
        omni_voice=text(voice, "omni", "voice.omni", required=False),
        voice_pitch=pitch or 0.0,
        image=_image(raw.get("image", ASTRONAUT), path.parent, where),
        voice_formant=formant,
        examples=tuple(pairs),
    )


def _image(value, base: Path, where: str) -> str:
    if value == ASTRONAUT:
        return ASTRONAUT
    if not isinstance(value, str) or not value.strip():
        raise PersonaError(f"{where}: image must be '{ASTRONAUT}' or a path to a picture, got {value!r}")
    path = (base / value).resolve()
    if not path.is_file():
        raise PersonaError(f"{where}: image {value} not found (looked in {path.parent})")
    return str(path)

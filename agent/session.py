"""Building conversations from config: the shared models, and a brain and an avatar per persona.

    async with open_stack(cfg) as stack:          # ASR, TTS, VAD, the LLM (server) once
        conv = make_conversation(stack, load_persona("ada"))
        blocks = await conv.step(mic_tick)         # one TICK_S of mic audio → A/V blocks

Two-agent mode makes two conversations from one stack opened with `seats=2`: each
persona has its own LLM (with the local model, its own server), so each keeps its own
prompt evaluated instead of re-reading it whenever the other persona has spoken.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

import numpy as np

import assets
from agent.brain import Brain, CascadeBrain, OmniBrain
from agent.conversation import Conversation
from agent.persona import Persona
from config import Config

log = logging.getLogger(__name__)
SESSION_RATE = 16000


@dataclass
class Stack:
    cfg: Config
    asr: object
    tts: object
    llms: list = field(default_factory=list)  # TextLLM per seat (cascade)
    omni: object | None = None      # OmniClient (omni)
    turn_end: object | None = None  # SmartTurn (turns.end_of_turn: semantic)


@contextlib.asynccontextmanager
async def open_stack(cfg: Config, progress: Callable[[str], None] = log.info, *,
                     seats: int = 1) -> AsyncIterator[Stack]:
    """Load the speech models and start (or connect to) an LLM for each of `seats`
    personas; stop it all on exit."""
    from speech.asr import ASR
    from speech.tts import TTS
    t = time.perf_counter()
    progress("loading speech models (Whisper, Piper) and the avatar")
    asr, tts, turn_end, _ = await asyncio.gather(asyncio.to_thread(ASR, cfg.asr), asyncio.to_thread(TTS, cfg.tts),
                                                 asyncio.to_thread(_turn_end_model, cfg),
                                                 asyncio.to_thread(_prepare_avatar, cfg))
    async with contextlib.AsyncExitStack() as exits:
        stack = Stack(cfg, asr, tts, turn_end=turn_end)
        if cfg.agent.mode == "omni":
            from agent.omni import OmniClient
            stack.omni = await exits.enter_async_context(OmniClient(cfg.omni))
        else:
            from agent.text_llm import TextLLM
            servers = [None] * seats
            if cfg.llm.provider == "local":
                from agent.llm_server import LocalLLMServer
                progress(f"starting the local LLM server ({cfg.llm.model} on llama.cpp)"
                         + (f" for each of {seats} personas" if seats > 1 else ""))
                # One after another: each takes its port before the next picks one. A
                # fixed llm.port is the first seat's; the others take free ports.
                servers = [await exits.enter_async_context(LocalLLMServer.from_config(cfg.llm, **({"port": 0} if i else {})))
                           for i in range(seats)]
            stack.llms = [await exits.enter_async_context(TextLLM(cfg.llm, server=s)) for s in servers]
        progress(f"ready in {time.perf_counter() - t:.1f} s")
        yield stack


def _turn_end_model(cfg: Config):
    if cfg.turns.end_of_turn != "semantic":
        return None
    from speech.turn_end import SmartTurn, TurnEndModelMissing
    try:
        model = SmartTurn(cfg.turns.threads)
    except TurnEndModelMissing as e:  # the conversation still works, on silence alone
        log.warning("%s; until then turns end on silence alone", e)
        return None
    model.warm_up()
    return model


def _prepare_avatar(cfg: Config) -> None:
    """Rig the default persona's portrait once, so the face models are loaded (≈ 0.9 s)
    before the first call rather than during it. A bad image is reported when a
    conversation is made, not here."""
    from agent.persona import load_persona
    if cfg.avatar.backend != "portrait":
        return
    try:
        make_backend(cfg).reset(reference_image(cfg, load_persona(cfg.agent.persona)))
    except Exception as e:  # the same error reaches the user with the conversation
        log.warning("avatar not prepared: %s", e)


def make_brain(stack: Stack, persona: Persona, seat: int = 0) -> Brain:
    tts = stack.tts.with_formants(persona.voice_formant)   # the persona's own vocal tract
    if stack.omni is not None:
        return OmniBrain(stack.omni, tts, persona, SESSION_RATE, asr=stack.asr)
    return CascadeBrain(stack.asr, stack.llms[seat], tts, persona, SESSION_RATE, rereads=len(stack.llms) == 1)


def reference_image(cfg: Config, persona: Persona) -> np.ndarray:
    from avatar_engine.reference import load_reference
    source = cfg.avatar.image or persona.image
    return assets.default_portrait() if source == "astronaut" else load_reference(source)


def make_backend(cfg: Config):
    if cfg.avatar.backend == "causal_dit":
        from avatar_engine.causal_dit.backend import CausalDiTBackend
        return CausalDiTBackend.from_config(cfg.avatar, cfg.causal_dit)
    from avatar_engine.portrait.backend import PortraitBackend
    return PortraitBackend(cfg.avatar.size, cfg.avatar.seed, cfg.avatar.allow_no_face)


def make_conversation(stack: Stack, persona: Persona, backend=None, seat: int = 0) -> Conversation:
    from avatar_engine.clocked import ClockedAvatar
    from avatar_engine.runtime import AvatarRuntime
    from speech.timeline import SessionClock, SpeakerTimeline
    cfg = stack.cfg
    clock, timeline = SessionClock(SESSION_RATE), SpeakerTimeline()
    backend = backend or make_backend(cfg)
    # The diffusion model generates fixed-size blocks; the portrait takes any size.
    frames = getattr(backend, "block_video_frames", cfg.avatar.frames_per_block)
    runtime = AvatarRuntime(backend, reference_image(cfg, persona), fps=cfg.avatar.fps, frames_per_block=frames,
                            sample_rate=SESSION_RATE, lookahead_blocks=cfg.avatar.lookahead_blocks,
                            listen_mask=timeline.mask)
    return Conversation(cfg, make_brain(stack, persona, seat), ClockedAvatar(runtime, clock), clock=clock,
                        timeline=timeline, asr=stack.asr, turn_end=stack.turn_end)

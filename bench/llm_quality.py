"""How well and how fast each bundled LLM answers, through the app's own path.

    python bench/llm_quality.py                              # every bundled model
    python bench/llm_quality.py --models qwen2.5-coder-1.5b --show

A fixed quiz of short spoken-style questions with automatically checkable answers
(facts, arithmetic, the persona's own name, follow-ups that need the previous turn, a
request to stop), asked of the default persona. Each model runs under the real embedded
llama.cpp server over HTTP, with the app's config (chat template, or the few-shot
transcript for the base model gemma-3-270m), history and reply guard: `TextLLM.spoken`,
as the cascade brain calls it. Each dialogue starts from an empty history after the
warm-up, as a session does.

Printed per model: the share of answers that pass their check (target: at least 80 % for
the default), the share that is brief and speakable (at most two sentences and 40
words), and first-token and first-clause latency (p50 / p90) from the request to the
first text and to the first clause that TTS can speak, and the first clause in CPU
seconds of the server process: on a machine shared with other jobs wall time says more
about the neighbours than about the model, while with `--threads 1` the server's CPU
time until the first clause is what a quiet core would take. Against the LLM's share of
the ~1.0 s end-of-speech-to-voice budget (LLM_BUDGET_S).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import assets  # noqa: E402
from agent.events import ReplyDone, ReplyFailed, Sentence, TextDelta  # noqa: E402
from agent.history import History  # noqa: E402
from agent.llm_server import LocalLLMServer  # noqa: E402
from agent.persona import load_persona  # noqa: E402
from agent.text_llm import TextLLM  # noqa: E402
from config import load_config  # noqa: E402

TARGET_SCORE = 0.80
# Of the 1.0 s from the end of speech to the voice, ASR takes ~0.35 s and TTS's first
# audio plus the first frame ~0.3 s: what is left for the LLM's first clause.
LLM_BUDGET_S = 0.35
# The few-shot transcript: only the base model needs it.
API = {name: "completions" if name in assets.BASE_MODELS else "chat" for name in assets.LOCAL_LLMS}


@dataclass(frozen=True)
class Ask:
    question: str
    kind: str               # fact | arithmetic | name | follow-up | stop | setup (not scored)
    expect: str | None      # a regex the reply must contain (case-insensitive); None: setup
    max_words: int = 40     # a stop request is answered briefly


SAYS_ADA = r"\b(?:i'm|i am|my name is|my name's|this is|it's|call me|name is|talking to|talking with)\s+ada\b|^ada\b"
GOODBYE = r"\bbye\b|goodbye|take care|anytime|welcome|see you|pleasure|great day|good day|nice day"

# Dialogues: each starts from an empty history; only follow-ups rely on earlier turns.
QUIZ: list[list[Ask]] = [
    [Ask("What is the biggest planet in our solar system?", "fact", r"jupiter")],
    [Ask("What is the capital of France?", "fact", r"paris")],
    [Ask("How many legs does a spider have?", "fact", r"\b8\b|\beight\b")],
    [Ask("What do bees make from nectar?", "fact", r"honey")],
    [Ask("Which planet is called the red planet?", "fact", r"mars")],
    [Ask("How many continents are there on Earth?", "fact", r"\b7\b|\bseven\b")],
    [Ask("What is the largest ocean on Earth?", "fact", r"pacific")],
    [Ask("Who wrote Romeo and Juliet?", "fact", r"shakespeare")],
    [Ask("At what temperature does water boil, in degrees Celsius?", "fact", r"\b100\b|hundred")],
    [Ask("What colour do you get when you mix blue and yellow?", "fact", r"green")],
    [Ask("What is the tallest mountain in the world?", "fact", r"everest")],
    [Ask("What is the largest animal that has ever lived?", "fact", r"blue whale")],
    [Ask("What force keeps our feet on the ground?", "fact", r"gravit")],
    [Ask("How many hours are there in a day?", "fact", r"\b24\b|twenty[- ]four")],
    [Ask("What gas do plants take in from the air to make food?", "fact", r"carbon dioxide|\bco2\b|co₂")],
    [Ask("What is the closest star to the Earth?", "fact", r"\bsun\b|proxima")],
    [Ask("What is frozen water called?", "fact", r"\bice\b")],
    [Ask("What is two plus three?", "arithmetic", r"\b5\b|\bfive\b")],
    [Ask("What is ten plus five?", "arithmetic", r"\b15\b|fifteen")],
    [Ask("What is seven times eight?", "arithmetic", r"\b56\b|fifty[- ]six")],
    [Ask("What is twenty minus seven?", "arithmetic", r"\b13\b|thirteen")],
    [Ask("What is half of fifty?", "arithmetic", r"\b25\b|twenty[- ]five")],
    [Ask("What is nine times nine?", "arithmetic", r"\b81\b|eighty[- ]one")],
    [Ask("What is your name?", "name", SAYS_ADA)],
    [Ask("Could you tell me what your name is?", "name", SAYS_ADA)],
    [Ask("Hello there, who am I talking to?", "name", SAYS_ADA)],
    [Ask("What is the capital of Italy?", "fact", r"rome"),
     Ask("And what language do people speak there?", "follow-up", r"italian")],
    [Ask("My favourite colour is purple. What is yours?", "setup", None),
     Ask("Can you remind me what my favourite colour is?", "follow-up", r"purple")],
    [Ask("I have three apples and I buy two more.", "setup", None),
     Ask("So how many apples do I have now?", "follow-up", r"\b5\b|\bfive\b")],
    [Ask("My name is Sam, by the way.", "setup", None),
     Ask("What is my name?", "follow-up", r"\bsam\b")],
    [Ask("Which planet has the biggest rings?", "fact", r"saturn"),
     Ask("Is it bigger than the Earth?", "follow-up", r"\byes\b|bigger|larger|times")],
    [Ask("Why is the sky blue?", "fact", r"scatter|bounce|light"),
     Ask("That's all, thank you. Bye!", "stop", GOODBYE, max_words=20)],
    [Ask("Okay, you can stop now, that's enough.", "stop",
         GOODBYE + r"|\bok|\bsure\b|alright|all right|of course|no problem|got it|understood|fine|sorry|stop",
         max_words=20)],
]


@dataclass
class Result:
    ask: Ask
    reply: str
    correct: bool
    brief: bool
    first_token_s: float | None
    first_clause_s: float | None
    first_clause_cpu_s: float | None
    finish_reason: str


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def ask(llm: TextLLM, persona, history: History, question: Ask) -> Result:
    t0 = time.perf_counter()
    cpu0 = cpu_seconds(llm.server.pid)
    first_token = first_clause = first_clause_cpu = None
    reply, finish = "", "failed"
    async with contextlib.aclosing(llm.spoken(persona, history, question.question)) as events:
        async for event in events:
            now = time.perf_counter() - t0
            if isinstance(event, TextDelta) and first_token is None:
                first_token = now
            elif isinstance(event, Sentence) and first_clause is None:
                first_clause = now
                first_clause_cpu = cpu_seconds(llm.server.pid) - cpu0
            elif isinstance(event, ReplyDone):
                reply, finish = event.text, event.finish_reason
            elif isinstance(event, ReplyFailed):
                reply, finish = event.message, "failed"
    history.add_user(question.question)
    history.add_agent(reply)
    words = len(reply.split())
    sentences = len(re.findall(r"[.!?]+(?:\s|$)", reply)) or 1
    correct = (question.expect is None or bool(re.search(question.expect, reply, re.IGNORECASE))) \
        and words <= question.max_words
    return Result(question, reply, correct, brief=sentences <= 2 and words <= 40, first_token_s=first_token,
                  first_clause_s=first_clause, first_clause_cpu_s=first_clause_cpu, finish_reason=finish)


def show(r: Result) -> None:
    verdict = "   " if r.ask.expect is None else "ok " if r.correct else "BAD"
    print(f"  {verdict} [{r.ask.kind}] {r.ask.question} -> {r.reply!r}"
          f" ({r.first_clause_s or float('nan'):.2f} s)", flush=True)


async def run_model(name: str, cfg, persona_id: str, verbose: bool, dialogues: int) -> list[Result]:
    llm_cfg = dataclasses.replace(cfg.llm, model=name, api=API[name], provider="local")
    persona = load_persona(persona_id)
    async with LocalLLMServer.from_config(llm_cfg) as server, TextLLM(llm_cfg, server=server) as llm:
        await llm.warm_up(persona)
        results = []
        for dialogue in QUIZ[:dialogues]:
            history = History.from_config(cfg.agent)
            for question in dialogue:
                results.append(await ask(llm, persona, history, question))
                if verbose:
                    show(results[-1])
        return results


def percentiles(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    if len(xs) < 2:
        return (xs[0], xs[0]) if xs else (float("nan"), float("nan"))
    q = statistics.quantiles(xs, n=10, method="inclusive")
    return statistics.median(xs), q[8]


def summary(name: str, results: list[Result]) -> dict:
    scored = [r for r in results if r.ask.expect is not None]
    tok = percentiles([r.first_token_s for r in results if r.first_token_s is not None])
    clause = percentiles([r.first_clause_s for r in results if r.first_clause_s is not None])
    cpu = percentiles([r.first_clause_cpu_s for r in results if r.first_clause_cpu_s is not None])
    return dict(model=name, score=sum(r.correct for r in scored) / len(scored),
                brief=sum(r.brief for r in results) / len(results),
                repeats=sum(r.finish_reason == "repeat" for r in results),
                token_p50=tok[0], token_p90=tok[1], clause_p50=clause[0], clause_p90=clause[1],
                cpu_p50=cpu[0], cpu_p90=cpu[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(assets.LOCAL_LLMS), choices=list(assets.LOCAL_LLMS))
    p.add_argument("--persona", default=None, help="default: agent.persona from config.yaml")
    p.add_argument("--show", action="store_true", help="print every question, reply and verdict")
    p.add_argument("--threads", type=int, help="llama.cpp threads (default: llm.threads; 1 on a busy machine)")
    p.add_argument("--temperature", type=float, help="default: llm.temperature")
    p.add_argument("--dialogues", type=int, default=len(QUIZ),
                   help="only the first N dialogues (a quick latency check; the score needs them all)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="llm.timeout_s for the quiz: a shared machine must not turn slow answers into wrong ones")
    args = p.parse_args()
    overrides = {k: v for k, v in (("threads", args.threads), ("temperature", args.temperature)) if v is not None}
    overrides["timeout_s"] = args.timeout
    cfg = load_config(overrides={"llm": overrides})
    persona_id = args.persona or cfg.agent.persona
    questions = sum(len(d) for d in QUIZ)
    scored = sum(a.expect is not None for d in QUIZ for a in d)
    print(f"{questions} questions ({scored} scored) in {len(QUIZ)} dialogues, persona {persona_id}, "
          f"llm.threads {cfg.llm.threads}, temperature {cfg.llm.temperature}, repeat_penalty {cfg.llm.repeat_penalty}")
    rows = []
    for name in args.models:
        print(f"\n== {name} ({API[name]})", flush=True)
        results = asyncio.run(run_model(name, cfg, persona_id, args.show, args.dialogues))
        rows.append(summary(name, results))
        print("  " + "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()),
              flush=True)
    print(f"\n| model | correct | brief | first token p50 / p90 | first clause p50 / p90 "
          f"| first clause, server CPU s, p50 / p90 | correct vs {TARGET_SCORE:.0%} | clause CPU p50 vs {LLM_BUDGET_S:.2f} s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['score']:.0%} | {r['brief']:.0%} | {r['token_p50']:.2f} / {r['token_p90']:.2f} s "
              f"| {r['clause_p50']:.2f} / {r['clause_p90']:.2f} s | {r['cpu_p50']:.2f} / {r['cpu_p90']:.2f} s "
              f"| {r['score'] / TARGET_SCORE:.2f} | {r['cpu_p50'] / LLM_BUDGET_S:.2f} |")
    default = next((r for r in rows if r["model"] == cfg.llm.model), None)
    if default:
        print(f"\ndefault {default['model']}: {default['score']:.0%} correct "
              f"({'meets' if default['score'] >= TARGET_SCORE else 'BELOW'} the {TARGET_SCORE:.0%} target)")
    return 0 if default is None or default["score"] >= TARGET_SCORE else 1


if __name__ == "__main__":
    sys.exit(main())

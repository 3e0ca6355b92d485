"""What a persona may say: markup and prompt markers never reach the voice, and a reply
that repeats itself or an earlier reply is stopped before the repeat (agent.reply_guard)."""
from __future__ import annotations

import asyncio

import pytest

from agent.events import ReplyDone, Sentence, TextDelta
from agent.history import History
from agent.persona import load_persona
from agent.reply_guard import RepeatGuard, guarded, speakable
from agent.text_llm import sentences


@pytest.mark.parametrize("text, said", [
    ("Mars is red. [interrupted]", "Mars is red."),
    ("[interrupted] Sure, go on.", "Sure, go on."),
    ("It is **Jupiter**, by far!", "It is Jupiter, by far!"),
    ("- First, rinse the rice.", "First, rinse the rice."),
    ("2. Then simmer it.", "Then simmer it."),
    ("Great question! 🚀✨", "Great question!"),
    ("Use `print` <br> here", "Use print here"),
    ("[interrupted", ""),
    ("Three hundred and eighty thousand kilometres.", "Three hundred and eighty thousand kilometres."),
])
def test_speakable(text, said):
    assert speakable(text) == said


def test_a_sentence_said_twice_in_one_reply_is_a_repeat():
    guard = RepeatGuard([])
    assert not guard.repeats("I'm Ada.")
    assert not guard.repeats("I love science.")
    assert guard.repeats("I'm Ada!")          # same words, other punctuation


def test_a_run_of_words_said_again_is_a_loop():
    guard = RepeatGuard([])
    assert not guard.repeats("The sun is a star that shines,")
    assert guard.repeats("and the sun is a star that shines again.")
    within = RepeatGuard([])
    assert within.repeats("and then it goes and then it goes and then it goes on")


def test_a_sentence_of_an_earlier_reply_is_not_said_again():
    guard = RepeatGuard(["It's a long story. Stars are born in clouds of gas."])
    assert guard.repeats("It's a long story.")
    assert not guard.repeats("Yes.")                      # too short to count as a repeat
    assert not guard.repeats("Born in clouds of gas, yes.")   # inside an earlier sentence, not its start
    assert not guard.repeats("Planets form from the leftovers.")
    assert guard.repeats("Stars are born in clouds,")        # an earlier sentence starting again


async def fake_reply(pieces: list[str], closed: list[bool]):
    """An LLM reply as text deltas; records whether the consumer closed it early."""
    try:
        for piece in pieces:
            yield TextDelta(piece)
            await asyncio.sleep(0)
        yield ReplyDone("".join(pieces).strip(), "stop")
    finally:
        closed.append(True)


def run_guarded(pieces: list[str], history: History) -> list:
    async def main():
        closed: list[bool] = []
        events = [e async for e in guarded(sentences(fake_reply(pieces, closed)), history)]
        return events, closed
    return asyncio.run(main())


def test_a_reply_that_starts_repeating_is_stopped_and_its_request_closed():
    pieces = ["Jupiter is the biggest planet. ", "It is huge. ", "Jupiter is the biggest planet. ", "It is huge. "]
    events, closed = run_guarded(pieces, History(8, 1024))
    said = [e.text for e in events if isinstance(e, Sentence)]
    assert said == ["Jupiter is the biggest planet.", "It is huge."]
    assert events[-1] == ReplyDone("Jupiter is the biggest planet. It is huge.", "repeat")
    assert closed == [True]


def test_a_reply_repeating_an_earlier_one_verbatim_is_not_spoken():
    history = History(8, 1024)
    history.add_user("Tell me a story.")
    history.add_agent("It's a long story, really.")
    events, _ = run_guarded(["It's a long story, ", "really. ", "Maybe another time."], history)
    assert not [e for e in events if isinstance(e, Sentence)]
    assert events[-1] == ReplyDone("", "repeat")


def test_the_interrupted_marker_is_never_spoken():
    # A small model copied the history's old marker into its reply: filtered out anyway.
    events, _ = run_guarded(["Mars is the fourth planet [interrupted]. ", "[interrupted] ", "It is red."],
                            History(8, 1024))
    said = [e.text for e in events if isinstance(e, Sentence)]
    assert said == ["Mars is the fourth planet.", "It is red."]
    assert "interrupted" not in events[-1].text


def test_an_interrupted_reply_is_shown_cut_off_without_a_marker():
    ada = load_persona("ada")
    h = History(8, 1024)
    h.add_user("Tell me about Mars.")
    h.add_agent("Mars is the fourth planet,", interrupted=True)
    h.add_user("Wait, what about Venus?")
    h.add_agent("", interrupted=True)   # cut off before a word was heard: no turn at all
    h.add_user("Hello?")
    messages = ada.chat_messages(h)[-4:]
    assert messages == [{"role": "user", "content": "Tell me about Mars."},
                        {"role": "assistant", "content": "Mars is the fourth planet…"},
                        {"role": "user", "content": "Wait, what about Venus?"},
                        {"role": "user", "content": "Hello?"}]
    prompt = ada.completion_prompt(h, "Still there?")
    assert "[" not in prompt and "Ada: Mars is the fourth planet…\nUser: Wait" in prompt

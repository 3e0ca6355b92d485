"""Pure pieces of the text path: sentence splitting, base-model cleanup, history, personas."""
from __future__ import annotations

import asyncio

import pytest

from agent.events import ReplyDone, ReplyFailed, Sentence, TextDelta, LLMError, FailureKind
from agent.history import History, approx_tokens
from agent.persona import PersonaError, load_persona, persona_ids
from agent.text_llm import BaseModelCleaner, split_sentences, sentences


# ── sentences ──

@pytest.mark.parametrize("text, done, rest", [
    ("Hello there. How are", ["Hello there."], "How are"),
    ("Wait! Really? Yes. ", ["Wait!", "Really?", "Yes."], ""),
    ("Pi is 3.14 exactly. And", ["Pi is 3.14 exactly."], "And"),
    ("Dr. Smith met Mr. Jones. Then", ["Dr. Smith met Mr. Jones."], "Then"),
    ("J. R. R. Tolkien wrote it. So", ["J. R. R. Tolkien wrote it."], "So"),
    ("Use salt, e.g. sea salt. Done", ["Use salt, e.g. sea salt."], "Done"),
    ('She said "stop." Then left', ['She said "stop."'], "Then left"),
    ("Well... maybe. Or", ["Well...", "maybe."], "Or"),
    ("No end yet", [], "No end yet"),
    ("The end.", [], "The end."),  # a period at the very end may be "3." of "3.5": wait
    ("line one\nline two", ["line one"], "line two"),
])
def test_split_sentences(text, done, rest):
    assert split_sentences(text) == (done, rest)


def test_a_long_clause_is_split_at_its_last_comma():
    text = "word " * 25 + "and then, " + "more " * 20 + "trailing"
    done, rest = split_sentences(text)
    assert done == [("word " * 25 + "and then,").strip()]
    assert rest == "more " * 20 + "trailing"


def test_sentences_stream_as_soon_as_each_one_ends():
    async def reply():
        for piece in ["Hel", "lo the", "re.", " How", " are you", "?", " Fine", " then"]:
            yield TextDelta(piece)
        yield ReplyDone("Hello there. How are you? Fine then", "stop")

    async def main():
        return [e async for e in sentences(reply())]
    events = asyncio.run(main())
    said = [(i, e.text) for i, e in enumerate(events) if isinstance(e, Sentence)]
    # "Hello there." is out as soon as " How" shows the space after the period (and before
    # that delta is passed on).
    assert said[0] == (events.index(TextDelta(" How")) - 1, "Hello there.")
    assert [t for _, t in said] == ["Hello there.", "How are you?", "Fine then"]
    assert events[-1] == ReplyDone("Hello there. How are you? Fine then", "stop")


@pytest.mark.parametrize("end, said", [
    (ReplyDone("Hi there. I was going", "length"), ["Hi there."]),  # cut by max_tokens: drop the fragment
    (ReplyDone("Hi there. I was going", "stop"), ["Hi there.", "I was going"]),
    (ReplyFailed(LLMError(FailureKind.STREAM_CUT, "cut")), ["Hi there."]),  # never speak a broken tail
])
def test_the_end_of_a_reply_decides_about_the_last_fragment(end, said):
    async def reply():
        yield TextDelta("Hi there. I was going")
        yield end

    async def main():
        return [e async for e in sentences(reply())]
    events = asyncio.run(main())
    assert [e.text for e in events if isinstance(e, Sentence)] == said
    assert events[-1] == end


# ── base-model cleanup ──

def clean(pieces: list[str]) -> str:
    cleaner = BaseModelCleaner("Ada:")
    return "".join(cleaner.feed(p) for p in pieces) + cleaner.finish()


@pytest.mark.parametrize("pieces, expected", [
    ([" Hello", " there."], "Hello there."),
    (["Ad", "a: Hi", "!"], "Hi!"),                                         # repeated label dropped
    ([" Sure.", "\nUs", "er: and me?"], "Sure."),                          # next turn cut
    ([" Sure. Ada: more"], "Sure."),
    ([" I'm Ada, hi."], "I'm Ada, hi."),                                   # the name is not a label
    ([" I like Us", "ers of tools."], "I like Users of tools."),           # held back, then released
    ([" Ends with Us"], "Ends with Us"),
    (["  ", " "], ""),
])
def test_base_model_cleaner(pieces, expected):
    assert clean(pieces) == expected


def test_cleaner_holds_back_only_what_could_be_a_label():
    cleaner = BaseModelCleaner("Ada:")
    assert cleaner.feed(" Hi. U") == "Hi."
    assert cleaner.feed("p we go") == " Up we go"


# ── history ──

def test_history_is_bounded_by_turns_and_its_start_changes_only_when_trimmed():
    h = History(max_turns=8, max_tokens=10_000)
    firsts = []
    for i in range(14):
        h.add_user(f"u{i}")
        assert len(h.turns) <= 8
        firsts.append(h.turns[0].text)
    # trimmed to the newest 4 when the 9th turn came, then kept until the next overflow:
    # the prompt's prefix (and the LLM server's evaluated context) survives 4 turns of 5
    assert firsts == ["u0"] * 8 + ["u5"] * 5 + ["u10"]
    assert [t.text for t in h.turns] == ["u10", "u11", "u12", "u13"]
    assert h.trims == 2


def test_a_trimmed_history_is_read_again_as_soon_as_it_is_written():
    import numpy as np
    from agent.replies import Reply, ReplyRunner

    class Brain:
        def __init__(self):
            self.reread_starts = []

        async def reread(self, history):
            self.reread_starts.append(history.turns[0].text)

    async def exchanges():
        brain = Brain()
        runner = ReplyRunner(brain, playout=None, history=History(4, 10_000), publish=lambda event: None)
        for i in range(4):
            runner.finish(Reply(i, np.zeros(0, np.float32), 0.0, user_text=f"q{i}", played=[f"a{i}"]), False)
            await asyncio.sleep(0)   # the reread runs
        await runner.close()
        return brain.reread_starts
    # 4 turns fit; q2 trims to [a1, q2], a3 to [q3, a3]: each trim read once, nothing else
    assert asyncio.run(exchanges()) == ["a1", "q3"]


def test_a_long_new_turn_is_kept_while_it_fits_the_bound():
    h = History(max_turns=100, max_tokens=80)
    h.add_user("hi")
    h.add_agent("x" * 300)                 # 79 tokens: over half the budget, within it
    assert [t.text for t in h.turns] == ["x" * 300]
    h.add_user("y" * 500)                  # alone over the budget: not kept
    assert h.turns == () and h.tokens == 0


def test_history_is_bounded_by_tokens_oldest_first():
    h = History(max_turns=100, max_tokens=4 * approx_tokens("x" * 40))
    for i in range(6):
        h.add_user(f"{i}" + "x" * 39)
        assert h.tokens <= h.max_tokens
    assert [t.text[0] for t in h.turns] == ["3", "4", "5"]


def test_an_interrupted_reply_keeps_what_was_heard_and_is_shown_cut_off():
    h = History(8, 1024)
    h.add_user("Tell me about Mars.")
    h.add_agent("Mars is the fourth planet, ", interrupted=True)
    h.add_agent("", interrupted=True)
    assert [t.text for t in h.turns] == ["Tell me about Mars.", "Mars is the fourth planet,", ""]
    assert [t.prompt_text for t in h.turns] == ["Tell me about Mars.", "Mars is the fourth planet…", ""]


# ── personas ──

def test_three_distinct_personas_ship():
    ids = persona_ids()
    assert {"ada", "basil", "juno"} <= set(ids)
    personas = [load_persona(i) for i in ids]
    assert len({p.system_prompt for p in personas}) == len({p.name for p in personas}) == len(ids)
    assert len({p.omni_voice for p in personas}) == len(ids)
    # one bundled Piper voice, told apart by pitch and formants
    assert len({(p.piper_voice, p.voice_pitch, p.voice_formant) for p in personas}) == len(ids)
    assert len({p.image for p in personas}) == len(ids)  # each its own face
    for p in personas:
        assert p.greeting and p.piper_voice and p.image and len(p.examples) >= 2


def test_config_default_persona_exists(cfg):
    assert load_persona(cfg.agent.persona).name == "Ada"


def test_completion_prompt_is_a_few_shot_transcript_with_a_stable_prefix():
    ada = load_persona("ada")
    h = History(8, 1024)
    first = ada.completion_prompt(h, "Hi")
    h.add_user("Hi")
    h.add_agent("Hello!", interrupted=True)
    second = ada.completion_prompt(h, "Why?")
    assert first.endswith("\nUser: Hi\nAda:")
    assert second.endswith("\nUser: Hi\nAda: Hello…\nUser: Why?\nAda:")
    # Everything before the turns is identical: the server reuses what it evaluated.
    prefix = first[:first.rindex("User: Hi")]
    assert second.startswith(prefix) and ada.system_prompt in prefix
    assert prefix.count("User: ") == prefix.count("Ada: ") == len(ada.examples)


@pytest.mark.parametrize("yaml_text, message", [
    ("name: X\n", "x.yaml: system_prompt must be a non-empty string, got None"),
    ("name: X\nsystem_prompt: s\ngreeting: g\nvoice: joe\n", "x.yaml: voice must be a mapping"),
    ("name: X\nsystem_prompt: s\ngreeting: g\nvoice: {piper: v}\nmood: happy\n", "x.yaml: unknown key 'mood'"),
    ("name: 'Dr: X'\nsystem_prompt: s\ngreeting: g\nvoice: {piper: v}\n",
     "x.yaml: name must not contain ':' or be 'User', got 'Dr: X'"),
    ("name: X\nsystem_prompt: s\ngreeting: g\nvoice: {piper: v, pitch: 9}\n",
     "x.yaml: voice.pitch must be a number of semitones in [-6, 6], got 9"),
    ("name: X\nsystem_prompt: s\ngreeting: g\nvoice: {piper: v, formant: high}\n",
     "x.yaml: voice.formant must be a number of semitones in [-6, 6], got 'high'"),
    ("name: X\nsystem_prompt: s\ngreeting: g\nvoice: {piper: v}\nimage: nope.png\n", "x.yaml: image nope.png not found"),
    ("name: X\nsystem_prompt: s\ngreeting: g\nvoice: {piper: v}\nexamples: [{user: hi}]\n",
     "x.yaml: examples[0] must have exactly the keys user and assistant"),
    ("name: [unclosed\n", "x.yaml: not valid YAML at line"),
])
def test_persona_errors_are_one_line(tmp_path, yaml_text, message):
    (tmp_path / "x.yaml").write_text(yaml_text)
    with pytest.raises(PersonaError) as e:
        load_persona("x", prompts_dir=tmp_path)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_unknown_persona_lists_the_available_ones():
    with pytest.raises(PersonaError, match=r"no persona 'bob' in .*prompts \(available: ada, basil, juno"):
        load_persona("bob")


def test_persona_image_path_is_resolved(tmp_path):
    (tmp_path / "me.png").write_bytes(b"png")
    (tmp_path / "x.yaml").write_text("name: X\nsystem_prompt: s\ngreeting: g\nvoice: {piper: v}\nimage: me.png\n")
    assert load_persona("x", prompts_dir=tmp_path).image == str(tmp_path / "me.png")


@pytest.mark.parametrize("text, clause, rest", [
    ("Sunlight bounces off the air, and blue light", "Sunlight bounces off the air,", "and blue light"),
    ("Yes, sunlight bounces off the air", None, "Yes, sunlight bounces off the air"),  # too short a clause
    ("No break here yet", None, "No break here yet"),
    # no comma: the first phrase boundary after four words
    ("Jupiter is the biggest planet in our solar", "Jupiter is the biggest planet", "in our solar"),
    ("Jupiter is the biggest planet in", None, "Jupiter is the biggest planet in"),  # "in" or "inside"?
    ("The sky looks blue because sunlight", "The sky looks blue", "because sunlight"),
    ("Bees make it in hives", None, "Bees make it in hives"),  # too short a phrase
])
def test_first_clause(text, clause, rest):
    from agent.text_llm import first_clause
    assert first_clause(text) == (clause, rest)


def test_the_first_clause_of_a_reply_is_spoken_before_its_sentence_ends():
    async def deltas():
        for piece in ["Sunlight bounces", " off the air, and", " blue light bounces", " the most. Then", " more."]:
            yield TextDelta(piece)
        yield ReplyDone("", "stop")

    async def collect():
        return [e.text for e in [e async for e in sentences(deltas())] if isinstance(e, Sentence)]
    assert asyncio.run(collect()) == ["Sunlight bounces off the air,", "and blue light bounces the most.", "Then more."]

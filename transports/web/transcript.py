"""What the page shows about a conversation: the state, the transcript, the latencies.

`snapshot` is sent to the browser whenever it changes; it is plain JSON so the page
needs no knowledge of the conversation's types.
"""
from __future__ import annotations

from agent.conversation import Conversation, State, TurnLog
from agent.persona import Persona

MAX_TURNS_SHOWN = 50   # the page keeps no more; the message stays small


def ui_state(conv: Conversation) -> str:
    """listening / thinking / speaking as the user perceives it: a reply prepared at a
    pause, or a voice ducked under the user's speech, is not heard."""
    if conv.state in (State.PREPARING, State.DUCKED):
        return State.LISTENING.value
    return conv.state.value


def turn_view(turn: TurnLog) -> dict:
    return {
        "user": turn.user_text,
        # what was played once it is final, else what the brain is saying
        "agent": turn.agent_text or turn.reply_text,
        "interrupted": turn.interrupted,
        "failed": turn.failure is not None,
        "response_s": turn.response_s,
        "barge_in_s": turn.barge_in_s,
    }


def snapshot(conv: Conversation, persona: Persona) -> dict:
    turns = list(conv.turns)[-MAX_TURNS_SHOWN:]
    return {"type": "update", "state": ui_state(conv), "name": persona.name, "greeting": persona.greeting,
            "turns": [turn_view(t) for t in turns]}

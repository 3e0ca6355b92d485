"""The models every call shares, opened once when the server starts.

Loading takes seconds (speech models, the local LLM server), so it runs in the
background: the page is up at once and shows `status` until the stack is ready, and
the stack stays open until the server stops, which closes it (and the LLM server).
"""
from __future__ import annotations

import asyncio
import logging

from agent.session import Stack, open_stack
from config import Config
from transports.web.memory import freeze_shared, unfreeze_shared

log = logging.getLogger(__name__)


class SharedStack:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.stack: Stack | None = None
        self.status = "starting"
        self.error: str | None = None

    @property
    def settled(self) -> bool:
        """Ready, or failed for good: nothing more to wait for."""
        return self.stack is not None or self.error is not None

    async def hold(self) -> None:
        """Open the stack and keep it open until this task is cancelled."""
        try:
            async with open_stack(self.cfg, progress=self._progress) as stack:
                self.stack = stack
                freeze_shared()  # collecting after each call looks only at what calls made
                await asyncio.Event().wait()
        except Exception as e:  # shown on the page; the server stays up to say so
            log.exception("loading the models failed")
            self.error = f"could not load the models: {e}"
        finally:
            self.stack = None
            unfreeze_shared()

    def _progress(self, message: str) -> None:
        self.status = message
        print(message, flush=True)

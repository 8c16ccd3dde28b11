"""Helpers shared by the test modules."""

from __future__ import annotations

import itertools
import os

from mandate import Client, Signer, SigningKey

_counter = itertools.count()


def name(role: str) -> str:
    """A fresh agent id (the session's coordinator is shared)."""
    return f"spiffe://mandate.local/py/{role}-{os.getpid()}-{next(_counter)}"


def register(admin: Client, address: str, role: str, parent: Client | None = None) -> tuple[Client, SigningKey]:
    """Registers a new agent (by `parent` for a worker) and returns a client for it."""
    key = SigningKey.generate()
    agent = name(role)
    (parent or admin).register_agent(
        agent_id=agent,
        public_key=key.public_key,
        role=role,
        parent_agent_id=parent.signer.agent if parent else "",
    )
    return Client(address, Signer(agent, key)), key

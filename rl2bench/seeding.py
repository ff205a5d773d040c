"""Named, independent random streams derived from one root seed.

Every stream is ``SeedSequence(root_seed, spawn_key=<hash of its name>)``: the numbers a stream gives
depend only on the root seed and the stream's name, never on the order in which jobs run, how many
workers there are, or which other streams exist. Evaluation, tuning and training instances come from
streams with different names, so they never share draws.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

PHASES = ("eval", "tune", "train")


def stream_key(*parts: str) -> tuple[int, ...]:
    return tuple(zlib.crc32(str(p).encode()) for p in parts)


def generator(root_seed: int, *parts: str) -> np.random.Generator:
    """A PCG64 generator for the stream named by ``parts`` (e.g. 'instances', 'eval', 'mab', 'n10-k5')."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(root_seed, spawn_key=stream_key(*parts))))


def instance_rng(root_seed: int, phase: str, task: str, cell: str) -> np.random.Generator:
    """Hidden instance parameters; shared by every algorithm of a cell (common random numbers)."""
    assert phase in PHASES, phase
    return generator(root_seed, "instances", phase, task, cell)


def env_rng(root_seed: int, phase: str, task: str, cell: str, chunk: int = 0) -> np.random.Generator:
    """Reward and transition noise of one chunk of instances; shared by every algorithm of a cell."""
    assert phase in PHASES, phase
    return generator(root_seed, "env", phase, task, cell, str(chunk))


def agent_rng(root_seed: int, phase: str, task: str, cell: str, algorithm: str, chunk: int = 0
              ) -> np.random.Generator:
    """The agent's own randomness on one chunk; the same for every setting of its grid, so settings
    are compared on common random numbers too."""
    assert phase in PHASES, phase
    return generator(root_seed, "agent", phase, task, cell, algorithm, str(chunk))


def sealed_seed(root_seed: int, phase: str, task: str, cell: str, algorithm: str, chunk: int = 0,
                batch: int = 0) -> int:
    """The seed of a plug-in's generator on one chunk (and engine batch): a SHA-256 digest of the stream's
    name and the root seed. One-way: the agent's generator holds the digest, never the root seed or the spawn
    key that ``instance_rng`` and ``env_rng`` are built from. (Where the root seed itself is public, as the
    committed leaderboards' seed 0 is, anyone can replay the instance streams; a maintainer evaluating a
    submission against unseen instances keeps its ``--seed`` private until the results are published.)"""
    assert phase in PHASES, phase
    name = "\x1f".join(map(str, ("sealed-agent", root_seed, phase, task, cell, algorithm, chunk, batch)))
    return int.from_bytes(hashlib.sha256(name.encode()).digest(), "little")

"""Trained populations shipped with the package, loadable in one line.

    from train import pretrained
    chaos = pretrained("chaos")  # a `Competitor`: network, [P, ...] parameters, config
    nmmo-eval pretrained:chaos --vs fighter --gif chaos.gif

A shipped file is a training checkpoint that holds only the populations' parameters (no
optimiser or realm state), so it is small and `load_competitor`, `nmmo-eval` and the
evaluation's entrants named `pretrained:NAME` read it like any checkpoint. How each was
trained (command, seconds, live agent-steps, final lifetime) is in its `meta` and in the
README; `bench/bench_learning.py --save FILE` writes one.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from train import checkpoint

PREFIX = "pretrained:"  # how an evaluation entrant names shipped populations


class Populations(NamedTuple):
    """What a shipped file stores: the parameters, under the key path a runner uses."""

    params: Any  # leaves [G, ...], one per network of the run (`config.n_networks`)


def save_populations(path: str | os.PathLike, params: Any, config: Any,
                     meta: dict[str, Any] | None = None) -> None:
    """Writes the population parameters `params` of a run of `config` as a checkpoint
    that `load_competitor` reads (atomically, as every checkpoint)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(path, Populations(params), config, meta)


def names() -> list[str]:
    """The names of the shipped populations ("chaos", "law")."""
    folder = resources.files("train") / "pretrained"
    return sorted(f.name.removesuffix(".msgpack") for f in folder.iterdir()
                  if f.name.endswith(".msgpack"))


def path(name: str) -> Path:
    """The file of the shipped populations `name`; `CheckpointError` (a `ValueError`) for
    an unknown name."""
    if name not in names():
        raise checkpoint.CheckpointError(
            f"no pretrained populations {name!r}; choose one of {names()}")
    return Path(str(resources.files("train") / "pretrained" / f"{name}.msgpack"))


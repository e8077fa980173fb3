"""The learning side of nmmo-jax: Flax policies, vmapped populations, a compiled PPO trainer,
checkpoints and evaluation. Uses only the public API of `nmmo_jax`."""

from typing import Any


def pretrained(name: str) -> Any:
    """The shipped trained populations `name` ("chaos", "law") as an evaluation
    `Competitor` (network, [P, ...] parameters, training config); see `train.zoo`.
    Imported on use, so `import train` stays light."""
    from train.evaluate import load_competitor
    from train.zoo import PREFIX

    return load_competitor(PREFIX + name)


__all__ = ["pretrained"]

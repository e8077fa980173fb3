"""Maps of a whole realm: who explored where, and a policy's value at every tile."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from nmmo_jax import game
from nmmo_jax.config import Params
from nmmo_jax.env import Env
from nmmo_jax.policies import WALKABLE
from nmmo_jax.render.painting import DPI
from nmmo_jax.render.palette import TILE_COLORS, population_colors
from nmmo_jax.state import Observation, State


def exploration_map(visits: Any, tiles: Any = None, colors: np.ndarray | None = None
                    ) -> np.ndarray:
    """Who explored where, [H, W, 3] uint8.

    `visits` is [P, H, W] (e.g. `Trajectory.visits` or `State.visits`). A visited tile
    takes the colour of the population that visited it most (ties: the lower index),
    scaled by brightness 0.35 + 0.65 * log(1 + n) / log(1 + n_max), n being the tile's
    visits by all populations. Unvisited tiles show the terrain of `tiles` at 20 %
    brightness, or black without `tiles`.
    """
    visits = np.asarray(visits)
    colors = population_colors(visits.shape[0]) if colors is None else np.asarray(colors)
    total = visits.sum(axis=0)
    brightness = 0.35 + 0.65 * np.log1p(total) / np.log1p(max(int(total.max()), 1))
    rgb = colors[visits.argmax(axis=0)] * brightness[..., None] * 255.0
    if tiles is None:
        background = np.zeros(total.shape + (3,))
    else:
        background = TILE_COLORS[np.asarray(tiles)] * 0.2
    return np.where((total > 0)[..., None], rgb, background).round().astype(np.uint8)


def plot_exploration(visits: Any, tiles: Any = None, ax: Any = None,
                     title: str = "exploration") -> Figure:
    """A figure of `exploration_map` with a legend: each population's colour and the
    number of distinct tiles it visited."""
    visits = np.asarray(visits)
    colors = population_colors(visits.shape[0])
    figure, ax = _figure_and_axes(ax)
    side = visits.shape[-1]
    ax.imshow(exploration_map(visits, tiles, colors), interpolation="nearest",
              extent=(-0.5, side - 0.5, side - 0.5, -0.5))
    ax.set_axis_off()
    ax.set_title(title)
    handles = [Patch(facecolor=c, edgecolor="black",
                     label=f"pop {p}: {int((visits[p] > 0).sum())} tiles")
               for p, c in enumerate(colors)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return figure


def _figure_and_axes(ax: Any) -> tuple[Figure, Any]:
    if ax is not None:
        return ax.figure, ax
    figure = Figure(figsize=(8, 5.5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def probe_observations(env: Env, state: State, params: Params | None = None,
                       slot: int | None = None, chunk: int = 256
                       ) -> tuple[np.ndarray, Observation]:
    """A fresh probe agent's observation on every walkable tile of `state`.

    Walkable tiles are the passable, non-lava tiles of `state.tiles` (grass, scrub,
    forest): where an agent can stand without dying. The probe is a newborn agent with
    full stats in `slot` (default: the first empty slot, else slot 0, whose agent it
    replaces), so it belongs to population slot % P; everything else in the realm stays
    as it is. Returns the probe positions [M, 2] int32 (row, col), row-major, and the
    probe slot's observation for each, a single-agent `Observation` whose fields lose
    their N axis and gain a leading M axis (tiles [M, V, V], own [M, F], entities
    [M, K, F] with F = `config.N_FEATURES`, entity_mask [M, K], target_mask [M, 3, K],
    alive [M], population [M]). Observations are built `chunk` probes at a time to
    bound memory.
    """
    params = env.default_params if params is None else params
    positions = np.argwhere(WALKABLE[np.asarray(state.tiles)]).astype(np.int32)
    if slot is None:
        empty = np.flatnonzero(~np.asarray(state.agents.alive))
        slot = int(empty[0]) if empty.size else 0
    return positions, _probe(env, state, params, jnp.asarray(positions), slot, chunk)


@functools.partial(jax.jit, static_argnames=("env", "slot", "chunk"))
def _probe(env: Env, state: State, params: Params, positions: jax.Array, slot: int,
           chunk: int) -> Observation:
    cfg = env.cfg

    def one(pos: jax.Array) -> Observation:
        fresh = game.fresh_agents(jnp.broadcast_to(pos, (cfg.n_agents, 2)), params, cfg)
        agents = jax.tree.map(lambda a, f: a.at[slot].set(f[slot]), state.agents, fresh)
        obs = env.observe(state.replace(agents=agents), params)
        return jax.tree.map(lambda x: x[slot], obs)

    return jax.lax.map(one, positions, batch_size=chunk)


def value_map(env: Env, state: State, params: Params | None,
              value_fn: Callable[[Observation], jax.Array], slot: int | None = None,
              chunk: int = 256) -> np.ndarray:
    """A policy's value at every tile, [H, W] float32, NaN where not walkable.

    `value_fn` maps one probe's single-agent `Observation` (see `probe_observations`;
    no leading axis: tiles [V, V], own [F], entities [K, F], ...) to a scalar. It is
    called once per walkable tile, in one `jax.vmap` over all probes. To feed a network
    that expects the [N, ...] layout, add the axis: `obs = jax.tree.map(lambda x:
    x[None], obs)`. Plot the result with `plot_value_map`.
    """
    positions, obs = probe_observations(env, state, params, slot, chunk)
    values = np.asarray(jax.jit(jax.vmap(value_fn))(obs), np.float32)  # [M]
    side = env.cfg.map_size
    out = np.full((side, side), np.nan, np.float32)
    out[positions[:, 0], positions[:, 1]] = values
    return out


def plot_value_map(values: np.ndarray, tiles: Any = None, ax: Any = None,
                   cmap: str = "viridis", title: str = "value") -> Figure:
    """A heat map of `value_map` over the terrain (shown at 35 % brightness where the
    map has no value), with a colour bar."""
    figure, ax = _figure_and_axes(ax)
    side = values.shape[-1]
    extent = (-0.5, side - 0.5, side - 0.5, -0.5)
    if tiles is not None:
        ax.imshow((TILE_COLORS[np.asarray(tiles)] * 0.35).astype(np.uint8),
                  interpolation="nearest", extent=extent)
    heat = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, interpolation="nearest",
                     extent=extent)
    figure.colorbar(heat, ax=ax, shrink=0.8)
    ax.set_axis_off()
    ax.set_title(title)
    return figure

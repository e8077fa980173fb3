"""Seeing the game: recorded rollouts, frames, GIFs, exploration maps and value maps.

Recording runs on device: `record` plays a policy for T ticks inside one `lax.scan`
and returns a `Trajectory`, the stacked states of one realm (`record_batch` and `pick`
do the same for a vmapped batch of realms). Drawing runs on the host with matplotlib
(Agg, no display needed): a `Painter` owns one figure and, for each state, only
updates its artists (the tiles, painted pixel by pixel; the agent scatter; the
health-bar and attack line collections; the counts in the header), so hundreds of
frames take seconds.

A frame shows the realm inside its lava ring plus `LAVA_MARGIN` tiles of lava. Tiles use
a fixed palette (`TILE_COLORS`); agents are discs coloured by population
(`population_colors`) with a black rim (a thick ice-cyan rim while frozen) and a health
bar above them (red to green on black); last tick's attacks are lines from attacker to
target, one look per style (melee solid white, range dashed black, mage dotted ice
cyan). No population uses white, black or ice cyan. A band above the map gives the tick,
the live agents of each population next to its colour, and a key to the marks.

    python -m nmmo_jax.render --preset chaos --policy fighter --ticks 300 --out rollout.gif
"""

from __future__ import annotations

import argparse
import functools
import operator
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from matplotlib import colormaps
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import LinearSegmentedColormap, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from PIL import Image
from tqdm import TqdmWarning

from nmmo_jax import game
from nmmo_jax.config import (
    CAUSE_NAMES,
    GRASS,
    LAVA,
    N_STYLES,
    PRESETS,
    STYLE_NAMES,
    Config,
    Params,
    config,
)
from nmmo_jax.env import Env
from nmmo_jax.policies import POLICIES, WALKABLE, Policy
from nmmo_jax.state import Info, Observation, State

# In Jupyter without ipywidgets, tqdm.auto warns "IProgress not found" and falls back to
# a text bar; the text bar is what we want there, so the warning is silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)
    from tqdm.auto import tqdm

# Tile palette, indexed by tile id (lava, water, grass, scrub, forest, stone, ore): muted,
# so that agents and attacks stand out.
TILE_COLORS = np.array([
    (196, 78, 44), (96, 142, 205), (158, 196, 128), (200, 186, 140),
    (84, 136, 90), (150, 150, 150), (160, 120, 170)], np.uint8)

# Distinct population colours for up to 12 populations; more use a colour map. None is
# white, black or ice cyan: those mark attacks and freezing.
POP_COLORS = ("#ffe119", "#f032e6", "#f58231", "#4363d8", "#e6194b", "#911eb4",
              "#fabed4", "#9a6324", "#000075", "#bfef45", "#aaffc3", "#808000")

# One line look per attack style (melee, range, mage): (colour, line style). A mage hit
# freezes, so the mage line shares its ice cyan with the rim of a frozen agent.
STYLE_LOOKS = (("#ffffff", "solid"), ("#000000", "dashed"), ("#00e5ff", "dotted"))
FROZEN_RIM = "#00e5ff"

# The palette as opaque RGBA pixels packed into one uint32 each, [7].
_TILE_PIXELS = np.concatenate([TILE_COLORS, np.full((len(TILE_COLORS), 1), 255, np.uint8)],
                              1).view(np.uint32)[:, 0]

DPI = 100
TITLE_PX = 56  # the band above the panels: tick, live counts, key
MAP_PX = 800  # default side of the map panel in pixels
LAVA_MARGIN = 2  # lava tiles shown beyond the spawn ring
AGENT_TILES = 1.35  # disc diameter in tiles
BAR_PX = 3.5  # health bar thickness in pixels (at least)
# Health bar colours from empty to full: bright enough to read on every tile.
HEALTH_COLORS = LinearSegmentedColormap.from_list("health", ["#ff1f1f", "#ffd400", "#1aff4a"])


def population_colors(n_pops: int) -> np.ndarray:
    """An RGB colour per population, [P, 3] float in [0, 1]: `POP_COLORS` for up to 12
    populations, evenly spaced samples of the "turbo" colour map beyond."""
    if n_pops <= len(POP_COLORS):
        return np.array([to_rgb(c) for c in POP_COLORS[:n_pops]])
    return colormaps["turbo"](np.linspace(0.05, 0.95, n_pops))[:, :3]


# ---------------------------------------------------------------------------------------
# Recording (on device)


@struct.dataclass
class Trajectory:
    """A recorded rollout of one realm (or, from `record_batch`, of R realms).

    Attributes:
      states: `State` stacked over ticks, leading axis T + 1 (tick 0 to T; [R, T + 1]
        for a batch). To keep memory at O(T * (N * K + H * W)) the per-tick visit
        counts are dropped: `states.visits` is an empty [T + 1, P, 0, 0] array.
      info: `Info` of each tick, leading axis T.
      visits: [P, H, W] int32, the visit counts of the final state.
      cfg: the realm's `Config` (static metadata, not an array).
    """

    states: State
    info: Info
    visits: jax.Array
    cfg: Config = struct.field(pytree_node=False)

    @property
    def ticks(self) -> int:
        """T, the number of ticks recorded (one less than the number of states)."""
        return self.info.cause.shape[-2]


def _without_visits(state: State) -> State:
    return state.replace(visits=jnp.zeros(state.visits.shape[:1] + (0, 0), jnp.int32))


def _play(env: Env, policy: Policy, key: jax.Array, params: Params, ticks: int,
          state: State) -> Trajectory:
    """Plays `policy` from `state` for `ticks` ticks under one scan."""

    def tick(carry: tuple[Observation, State], key: jax.Array):
        obs, state = carry
        act_key, step_key = jax.random.split(key)
        obs, state, _, _, info = env.step(step_key, state, policy(act_key, obs), params)
        return (obs, state), (_without_visits(state), info)

    obs = env.observe(state, params)
    (_, last), (states, info) = jax.lax.scan(tick, (obs, state), jax.random.split(key, ticks))
    first = _without_visits(state)
    states = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, states)
    return Trajectory(states=states, info=info, visits=last.visits, cfg=env.cfg)


_play_jit = jax.jit(_play, static_argnames=("env", "policy", "ticks"))


def record(env: Env, policy: Policy, key: jax.Array, params: Params | None = None,
           ticks: int = 200, realm: State | None = None) -> Trajectory:
    """Plays `policy` in one realm for `ticks` ticks, on device.

    `realm` is the state to start from (e.g. from `env.make_state`); None resets a new
    realm from `key`. `params` None means `env.default_params`. The rollout is one
    jitted scan, compiled once per (env, policy, ticks) whichever way the realm came.
    """
    params = env.default_params if params is None else params
    reset_key, run_key = jax.random.split(key)
    if realm is None:
        _, realm = env.reset(reset_key, params)
    return _play_jit(env, policy, run_key, params, ticks, realm)


@functools.partial(jax.jit, static_argnames=("env", "policy", "ticks", "n_realms"))
def record_batch(env: Env, policy: Policy, key: jax.Array, params: Params | None = None,
                 ticks: int = 200, n_realms: int = 4) -> Trajectory:
    """`record` over `n_realms` new realms at once (vmapped); every array gains a leading
    realm axis R. Take one realm out with `pick`."""
    params = env.default_params if params is None else params

    def one(key: jax.Array) -> Trajectory:
        reset_key, run_key = jax.random.split(key)
        return _play(env, policy, run_key, params, ticks, env.reset(reset_key, params)[1])

    return jax.vmap(one)(jax.random.split(key, n_realms))


def pick(batch: Any, index: int) -> Any:
    """Realm `index` of a batched pytree (a `Trajectory` from `record_batch`, a vmapped
    `State`, ...): every array indexed on its leading axis."""
    return jax.tree.map(lambda x: x[index], batch)


def summary(trajectory: Trajectory) -> str:
    """A few lines: ticks, agents alive at the end, deaths by cause, mean lifetime."""
    info = jax.device_get(trajectory.info)
    cause = np.asarray(info.cause)
    deaths = int(np.sum(cause > 0))
    by_cause = ", ".join(f"{name} {int(np.sum(cause == i))}"
                         for i, name in enumerate(CAUSE_NAMES) if i > 0)
    alive = np.asarray(trajectory.states.agents.alive[-1])
    lines = [f"ticks {trajectory.ticks}, alive at the end {int(alive.sum())}/{alive.size}",
             f"deaths {deaths}: {by_cause}"]
    if deaths:
        lines.append(f"mean lifetime of the dead {np.sum(info.lifetime) / deaths:.1f} ticks")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Frames (host)


def map_window(cfg: Config, margin: int | None = LAVA_MARGIN) -> tuple[int, int]:
    """The rows (and columns) [lo, hi) that a frame shows: the realm inside its lava
    ring plus `margin` tiles of lava, or the whole map for `margin` None."""
    lo = 0 if margin is None else max(cfg.lava_border - margin, 0)
    return lo, cfg.map_size - lo


class _Tiles(Artist):
    """The tile map of one panel, painted pixel by pixel: each pixel of the axes takes the
    colour of the tile under its centre (lava off the map) and the result goes to the
    renderer as one unscaled image. This skips matplotlib's image resampling, the
    slowest part of a frame."""

    def __init__(self, ax: Any):
        super().__init__()
        self.ax = ax
        self.set_zorder(0)
        self.colors = np.zeros((1, 1), np.uint32)  # [H, W] packed RGBA

    def set_tiles(self, tiles: np.ndarray) -> None:
        """`tiles`: [H, W] tile ids."""
        self.colors = _TILE_PIXELS[tiles]

    def draw(self, renderer: Any) -> None:
        x0, y0, x1, y1 = np.round(self.ax.bbox.extents).astype(int)
        width, height = x1 - x0, y1 - y0
        if not self.get_visible() or width < 1 or height < 1:
            return
        to_data = self.ax.transData.inverted()
        across = np.stack([x0 + np.arange(width) + 0.5, np.full(width, y0 + 0.5)], 1)
        up = np.stack([np.full(height, x0 + 0.5), y0 + np.arange(height) + 0.5], 1)
        cols = np.round(to_data.transform(across)[:, 0]).astype(int)  # [w]
        rows = np.round(to_data.transform(up)[:, 1]).astype(int)  # [h], bottom row first
        side_r, side_c = self.colors.shape
        on_map = ((rows >= 0) & (rows < side_r))[:, None] & ((cols >= 0) & (cols < side_c))
        packed = self.colors[np.clip(rows, 0, side_r - 1)][:, np.clip(cols, 0, side_c - 1)]
        packed = np.where(on_map, packed, _TILE_PIXELS[LAVA])
        gc = renderer.new_gc()
        gc.set_clip_rectangle(self.ax.bbox)
        renderer.draw_image(gc, x0, y0, packed.view(np.uint8).reshape(height, width, 4))
        gc.restore()


class _Layer:
    """The artists of one map panel: tiles, agents, health bars, attacks, view box.

    The axes start out showing `window` (rows and columns [lo, hi)); `tile_px`, a tile's
    side on screen, sets the size of every mark.
    """

    def __init__(self, ax: Any, window: tuple[int, int], view_size: int, tile_px: float):
        lo, hi = window
        ax.set_xticks([])
        ax.set_yticks([])
        ax.spines[:].set_visible(False)
        self.tiles = _Tiles(ax)
        ax.add_artist(self.tiles)
        tile = tile_px * 72.0 / DPI  # a tile's side in points
        self.rims = (max(0.8, tile / 12), max(2.0, tile / 5))  # plain, frozen
        self.agents = ax.scatter(np.zeros(0), np.zeros(0), s=(AGENT_TILES * tile) ** 2,
                                 zorder=3)
        bar = max(BAR_PX * 72.0 / DPI, tile / 6)
        self.bar_back = LineCollection([], colors="black", linewidths=bar + 1.5,
                                       capstyle="butt", zorder=4)
        self.health = LineCollection([], linewidths=bar, capstyle="butt", zorder=5)
        self.attacks = [LineCollection([], colors=color, linestyles=look, zorder=6,
                                       linewidths=max(2.0, tile / 6))
                        for color, look in STYLE_LOOKS]
        for artist in (self.bar_back, self.health, *self.attacks):
            ax.add_collection(artist)
        self.view = Rectangle((0, 0), view_size, view_size, fill=False, edgecolor="white",
                              linewidth=2.0, zorder=7, visible=False)
        ax.add_patch(self.view)
        ax.set_xlim(lo - 0.5, hi - 0.5)
        ax.set_ylim(hi - 0.5, lo - 0.5)
        self.ax = ax

    def update(self, scene: dict[str, Any]) -> None:
        self.tiles.set_tiles(scene["tiles"])
        self.agents.set_offsets(scene["xy"])
        self.agents.set_facecolor(scene["face"])
        self.agents.set_edgecolor(scene["rim"])
        self.agents.set_linewidths(np.where(scene["frozen"], *self.rims[::-1]))
        self.bar_back.set_segments(scene["bar_backs"])
        self.health.set_segments(scene["bars"])
        self.health.set_color(scene["bar_colors"])
        for style in range(N_STYLES):
            self.attacks[style].set_segments(scene["attacks"][style])


class _AxesTitle:
    """The title of a frame drawn into given axes: tick, live total, and the live agents
    of each population as numbers."""

    def __init__(self, ax: Any):
        self.text = ax.set_title("", fontsize=10)

    def update(self, tick: int, counts: np.ndarray) -> None:
        self.text.set_text(f"tick {tick}   alive {int(counts.sum())}   "
                           f"per population: {' '.join(map(str, counts))}")


class _Header:
    """The band above the panels of the painter's own figure.

    Its first row gives the tick, the live agents and each population's live count after
    a disc of its colour (as plain numbers when the discs do not fit the width). Its
    second row is the key: each attack style's line, the frozen rim and the health bar,
    drawn as on the map over a swatch of grass.
    """

    FONT = 10

    def __init__(self, figure: Figure, band: tuple[float, float, float, float],
                 colors: np.ndarray):
        axes = figure.add_axes(band)
        axes.set_axis_off()
        height = band[3] * figure.bbox.height
        axes.set_xlim(0, figure.bbox.width)  # axes units are pixels
        axes.set_ylim(0, height)
        self.axes, self.renderer = axes, figure.canvas.get_renderer()
        top, bottom = 0.72 * height, 0.27 * height
        self.head, x = self._text(10, top, "tick 00000   alive 0000", reserve=True)
        label = "alive per population:"
        entry = 23 + self._width("000")  # a disc and a count
        self.keyed = x + 12 + self._width(label) + len(colors) * entry <= figure.bbox.width
        self.counts = []
        if self.keyed:
            _, x = self._text(x + 12, top, label)
            discs = []
            for _ in colors:
                discs.append(x + 14)
                count, x = self._text(x + 23, top, "000", reserve=True)
                self.counts.append(count)
            axes.scatter(discs, np.full(len(discs), top), s=110, c=colors,
                         edgecolors="black", linewidths=1.0)
        self._key(bottom)

    def _text(self, x: float, y: float, text: str, reserve: bool = False
              ) -> tuple[Any, float]:
        """Places `text` from `x`; returns it and where the next item may start, after
        its width. With `reserve` the text is emptied once measured (a place for later
        text up to that width)."""
        artist = self.axes.text(x, y, text, va="center", ha="left", fontsize=self.FONT)
        end = x + artist.get_window_extent(self.renderer).width
        if reserve:
            artist.set_text("")
        return artist, end

    def _width(self, text: str) -> float:
        """The width of `text` in pixels."""
        artist = self.axes.text(0, 0, text, fontsize=self.FONT)
        width = artist.get_window_extent(self.renderer).width
        artist.remove()
        return width

    def _swatch(self, x: float, y: float) -> tuple[float, float]:
        """A grass swatch 34 x 16 pixels from `x`; returns its centre."""
        self.axes.add_patch(Rectangle((x, y - 8), 34, 16, facecolor=TILE_COLORS[GRASS] / 255.0,
                                      edgecolor="none"))
        return x + 17, y

    def _key(self, y: float) -> None:
        _, x = self._text(10, y, "attacks:")
        for name, (color, look) in zip(STYLE_NAMES, STYLE_LOOKS, strict=True):
            cx, cy = self._swatch(x + 8, y)
            self.axes.plot([cx - 14, cx + 14], [cy, cy], color=color, linestyle=look,
                           linewidth=2.5)
            _, x = self._text(x + 46, y, name)
        cx, cy = self._swatch(x + 24, y)
        self.axes.scatter([cx], [cy], s=110, c="#d0d0d0", edgecolors=FROZEN_RIM,
                          linewidths=2.2)
        _, x = self._text(x + 62, y, "frozen")
        cx, cy = self._swatch(x + 24, y)
        self.axes.plot([cx - 13, cx + 13], [cy, cy], color="black", linewidth=6,
                       solid_capstyle="butt")
        self.axes.plot([cx - 12, cx + 3], [cy, cy], color=HEALTH_COLORS(0.6),
                       linewidth=4, solid_capstyle="butt")
        self._text(x + 62, y, "health (red low, green full)")

    def update(self, tick: int, counts: np.ndarray) -> None:
        head = f"tick {tick}   alive {int(counts.sum())}"
        if not self.keyed:
            self.head.set_text(f"{head}   alive per population: {' '.join(map(str, counts))}")
            return
        self.head.set_text(head)
        for text, count in zip(self.counts, counts, strict=True):
            text.set_text(str(count))


class Painter:
    """One reusable figure drawing states of a realm with config `cfg`.

    A frame shows the rows and columns `map_window(cfg, lava_margin)`: the realm inside
    its lava ring plus `lava_margin` tiles of lava (None: the whole map). With no `ax`
    the painter makes its own Agg figure: the map fills a square panel of `map_px`
    pixels (rounded down to whole pixels per tile) under a band with the tick, the live
    counts and a key, and with `zoom_agent` (a slot) a second panel of the same size
    follows that agent with its view window outlined (on the map too, cut to the shown
    tiles). With `ax` it draws into that axes and sets its title; the zoom panel needs
    the painter's own figure. Health bars are scaled by `cfg.params.max_health`.
    """

    def __init__(self, cfg: Config, zoom_agent: int | None = None, ax: Any = None,
                 map_px: int = MAP_PX, lava_margin: int | None = LAVA_MARGIN):
        if ax is not None and zoom_agent is not None:
            raise ValueError("zoom_agent needs the painter's own figure; leave ax=None")
        if zoom_agent is not None and not 0 <= zoom_agent < cfg.n_agents:
            raise ValueError(f"zoom_agent {zoom_agent} is not a slot in [0, {cfg.n_agents})")
        self.cfg, self.zoom_agent = cfg, zoom_agent
        self.colors = population_colors(cfg.n_pops)
        self.window = map_window(cfg, lava_margin)
        shown = self.window[1] - self.window[0]
        self.zoom = None
        if ax is not None:
            self.figure = ax.figure
            self.title = _AxesTitle(ax)
            self.main = _Layer(ax, self.window, cfg.view_size,
                               ax.get_window_extent().width / shown)
            return
        tile_px = max(map_px // shown, 1)
        map_px = tile_px * shown
        panels = 1 if zoom_agent is None else 2
        height = map_px + TITLE_PX
        self.figure = Figure(figsize=(panels * map_px / DPI, height / DPI), dpi=DPI)
        FigureCanvasAgg(self.figure)
        box = map_px / height
        self.main = _Layer(self.figure.add_axes((0, 0, 1 / panels, box)), self.window,
                           cfg.view_size, tile_px)
        self.title = _Header(self.figure, (0, box, 1, 1 - box), self.colors)
        if zoom_agent is not None:
            self.zoom_span = cfg.view_size + 4
            self.zoom_centre = (cfg.map_size // 2, cfg.map_size // 2)
            zoom_ax = self.figure.add_axes((0.5, 0, 0.5, box))
            self.zoom = _Layer(zoom_ax, self.window, cfg.view_size, map_px / self.zoom_span)
            zoom_ax.spines["left"].set(visible=True, color="white", linewidth=3)
            self.zoom_label = zoom_ax.text(
                0.015, 0.985, "", transform=zoom_ax.transAxes, ha="left", va="top",
                fontsize=11, zorder=8,
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 3})

    def draw(self, state: State, previous: State | None = None) -> Painter:
        """Updates every artist from one realm's `state` (no batch axes) and renders.

        `previous`, the state a tick earlier, places the victims whose slot was refilled
        by a spawn in the same tick (without it, attacks on them are not drawn).
        """
        state = jax.device_get(state)
        scene = _scene(state, self.cfg, self.colors, previous)
        self.main.update(scene)
        alive = np.asarray(state.agents.alive)
        self.title.update(int(state.tick), np.bincount(
            np.asarray(state.agents.population)[alive], minlength=self.cfg.n_pops))
        if self.zoom is not None:
            self.zoom.update(scene)
            self._follow(state)
        self.figure.canvas.draw()
        return self

    def _follow(self, state: State) -> None:
        """Centres the zoom panel on the zoom agent and outlines its view window; while
        the slot is empty the panel stays where the agent was last seen (at first, the
        map's centre) and the outline is hidden. On the map the outline is cut to the
        shown tiles, so it always lies inside its panel."""
        slot, r = self.zoom_agent, self.cfg.view_radius
        alive = bool(state.agents.alive[slot])
        if alive:
            self.zoom_centre = tuple(np.asarray(state.agents.pos[slot]))
        row, col = self.zoom_centre
        side = 2 * r + 1
        self.zoom.view.set_bounds(col - r - 0.5, row - r - 0.5, side, side)
        lo, hi = self.window[0] - 0.3, self.window[1] - 0.7  # inside the panel's edge
        x0, y0 = max(col - r - 0.5, lo), max(row - r - 0.5, lo)
        x1, y1 = min(col + r + 0.5, hi), min(row + r + 0.5, hi)
        self.main.view.set_bounds(x0, y0, x1 - x0, y1 - y0)
        for layer in (self.main, self.zoom):
            layer.view.set_visible(alive)
        half = self.zoom_span / 2
        self.zoom.ax.set_xlim(col - half, col + half)
        self.zoom.ax.set_ylim(row + half, row - half)
        status = "empty slot"
        if alive:
            status = f"health {int(state.agents.health[slot])}"
            if state.agents.freeze[slot] > 0:
                status += f", frozen {int(state.agents.freeze[slot])}"
        self.zoom_label.set_text(f"agent {slot} (population {slot % self.cfg.n_pops}): "
                                 f"{status}, view {side} x {side}")

    def image(self) -> np.ndarray:
        """The last drawn frame as an [h, w, 3] uint8 array."""
        return np.asarray(self.figure.canvas.buffer_rgba())[..., :3].copy()

    def pixel(self, row: float, col: float) -> tuple[int, int]:
        """The (y, x) pixel of `image()` at the centre of map tile (row, col)."""
        x, y = self.main.ax.transData.transform((col, row))
        return int(self.figure.bbox.height - y), int(x)


def _scene(state: State, cfg: Config, colors: np.ndarray, previous: State | None
           ) -> dict[str, Any]:
    """What one frame shows, as numpy arrays ready for the artists.

    Attack lines join attacker and target as they stand now. After tick 0 a target
    slot holding a newborn was refilled after its agent died this tick, so that line
    ends where the victim stood a tick earlier (or is dropped without `previous`).
    """
    agents = state.agents
    live = np.flatnonzero(agents.alive)
    pos = np.asarray(agents.pos, np.float32)
    refilled = (np.asarray(agents.alive) & (np.asarray(agents.time_alive) == 0)
                & (int(state.tick) > 0))
    victim_pos = pos if previous is None else np.where(
        refilled[:, None], np.asarray(previous.agents.pos, np.float32), pos)
    row, col = pos[live, 0], pos[live, 1]
    frozen = np.asarray(agents.freeze)[live] > 0
    health = np.clip(np.asarray(agents.health)[live] / float(cfg.params.max_health), 0, 1)
    left, top = col - 0.6, row - 0.95

    def bars(fill: np.ndarray) -> np.ndarray:  # [L, 2, 2] segments (x, y)
        return np.stack([np.stack([left, top], 1), np.stack([left + 1.2 * fill, top], 1)], 1)

    style, target = np.asarray(agents.last_style), np.asarray(agents.last_target)
    attacks = []
    for s in range(N_STYLES):
        who = np.flatnonzero((style == s) & (target >= 0))
        if previous is None:
            who = who[~refilled[target[who]]]
        ends = np.stack([pos[who], victim_pos[target[who]]], 1)[..., ::-1]  # (x, y)
        attacks.append(ends)
    return {
        "tiles": np.asarray(state.tiles),
        "xy": np.stack([col, row], 1),
        "face": colors[np.asarray(agents.population)[live]],
        "rim": np.where(frozen[:, None], to_rgb(FROZEN_RIM), (0.0, 0.0, 0.0)),
        "frozen": frozen,
        "bar_backs": bars(np.ones_like(health)),
        "bars": bars(health),
        "bar_colors": HEALTH_COLORS(health),
        "attacks": attacks,
    }


def draw_frame(state: State, cfg: Config, ax: Any = None, zoom_agent: int | None = None
               ) -> Figure:
    """A figure of one realm's `state` (see `Painter`)."""
    return Painter(cfg, zoom_agent=zoom_agent, ax=ax).draw(state).figure


def frame(state: State, cfg: Config, zoom_agent: int | None = None) -> np.ndarray:
    """One realm's `state` as an [h, w, 3] uint8 image."""
    return Painter(cfg, zoom_agent=zoom_agent).draw(state).image()


def iter_frames(trajectory: Trajectory | State, cfg: Config | None = None,
                zoom_agent: int | None = None, progress: bool = True
                ) -> Iterator[np.ndarray]:
    """The frames of a recorded rollout, one [h, w, 3] uint8 image per state, drawn on
    one reused figure; `trajectory` is a `Trajectory` or a stacked `State` (then `cfg` is
    required). Shows a tqdm bar when `progress`."""
    states, cfg = _states_and_config(trajectory, cfg)
    states = jax.device_get(states)
    painter = Painter(cfg, zoom_agent=zoom_agent)
    count = states.tick.shape[0]
    previous = None
    for t in tqdm(range(count), desc="drawing", unit="frame", disable=not progress):
        state = jax.tree.map(operator.itemgetter(t), states)
        yield painter.draw(state, previous).image()
        previous = state


def _states_and_config(trajectory: Trajectory | State, cfg: Config | None
                       ) -> tuple[State, Config]:
    if isinstance(trajectory, Trajectory):
        return trajectory.states, cfg or trajectory.cfg
    if cfg is None:
        raise ValueError("drawing a stacked State needs cfg=")
    return trajectory, cfg


def save_gif(trajectory: Trajectory | State, path: str | os.PathLike, fps: float = 10,
             cfg: Config | None = None, zoom_agent: int | None = None,
             progress: bool = True) -> str:
    """Draws a recorded rollout into a looping GIF, one frame per recorded state (T + 1
    for T ticks); returns the path."""
    return write_gif(iter_frames(trajectory, cfg, zoom_agent, progress), path, fps)


def write_gif(images: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 10) -> str:
    """Writes [h, w, 3] uint8 images as a looping GIF; returns the path. Images stream
    into Pillow, each reduced to its own 255-colour palette by the fast octree quantizer
    (ten times faster than Pillow's default median cut)."""
    frames = (Image.fromarray(image).quantize(255, method=Image.Quantize.FASTOCTREE)
              for image in images)
    first = next(frames)
    first.save(path, save_all=True, append_images=frames, duration=round(1000 / fps), loop=0)
    return str(path)


def save_frames(trajectory: Trajectory | State, folder: str | os.PathLike,
                cfg: Config | None = None, zoom_agent: int | None = None,
                progress: bool = True) -> list[str]:
    """Draws a recorded rollout into `folder` as `frame_0000.png`, ... (one per recorded
    state); returns the paths."""
    paths: list[str] = []
    for _ in write_frames(iter_frames(trajectory, cfg, zoom_agent, progress), folder, paths):
        pass
    return paths


def write_frames(images: Iterable[np.ndarray], folder: str | os.PathLike,
                 paths: list[str] | None = None) -> Iterator[np.ndarray]:
    """Passes `images` through, writing each as `folder/frame_NNNN.png` on the way (and
    appending its path to `paths`), so one drawing pass can feed PNGs and a GIF."""
    os.makedirs(folder, exist_ok=True)
    for t, image in enumerate(images):
        path = os.path.join(folder, f"frame_{t:04d}.png")
        Image.fromarray(image).save(path)
        if paths is not None:
            paths.append(path)
        yield image


def show_gif(path: str | os.PathLike) -> Any:
    """The GIF as an `IPython.display.Image`, shown when it is a notebook cell's value."""
    try:
        from IPython.display import Image as IPythonImage
    except ImportError as error:
        raise ImportError("show_gif needs IPython (pip install ipython)") from error
    return IPythonImage(filename=str(path))


# ---------------------------------------------------------------------------------------
# Exploration maps


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


# ---------------------------------------------------------------------------------------
# Value maps


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


# ---------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> None:
    """Records a rollout, writes it as a GIF and/or PNG frames, and prints a summary."""
    parser = argparse.ArgumentParser(
        prog="python -m nmmo_jax.render",
        description="Record a baseline policy in one realm and draw it.")
    parser.add_argument("--preset", default="chaos", choices=sorted(PRESETS))
    parser.add_argument("--policy", default="forager", choices=sorted(POLICIES))
    parser.add_argument("--ticks", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="rollout.gif", help="GIF path ('' for none)")
    parser.add_argument("--frames", default=None, help="folder for one PNG per tick")
    parser.add_argument("--fps", type=float, default=10)
    parser.add_argument("--zoom", type=int, default=None, help="slot to follow in a zoom panel")
    parser.add_argument("--agents", type=int, default=None, help="agent slots (n_agents)")
    parser.add_argument("--pops", type=int, default=None, help="populations (n_pops)")
    parser.add_argument("--map-size", type=int, default=None)
    parser.add_argument("--lava-border", type=int, default=None)
    args = parser.parse_args(argv)
    if args.ticks < 1:
        parser.error(f"argument --ticks: must be >= 1, got {args.ticks}")
    if not args.fps > 0:
        parser.error(f"argument --fps: must be > 0, got {args.fps}")
    if not 0 <= args.seed < 2**32:
        parser.error(f"argument --seed: must be in [0, 2**32), got {args.seed}")

    sizes = {"n_agents": args.agents, "n_pops": args.pops, "map_size": args.map_size,
             "lava_border": args.lava_border}
    try:
        cfg = config(args.preset, **{k: v for k, v in sizes.items() if v is not None})
    except ValueError as err:
        parser.error(str(err))
    if args.zoom is not None and not 0 <= args.zoom < cfg.n_agents:
        parser.error(f"argument --zoom: must be a slot in [0, {cfg.n_agents}), got {args.zoom}")
    env = Env(cfg)
    trajectory = jax.block_until_ready(
        record(env, POLICIES[args.policy], jax.random.key(args.seed), None, args.ticks))
    if args.out or args.frames:
        images = iter_frames(trajectory, zoom_agent=args.zoom)
        if args.frames:
            images = write_frames(images, args.frames)
        if args.out:
            print(f"wrote {write_gif(images, args.out, fps=args.fps)}")
        else:
            for _ in images:
                pass
        if args.frames:
            print(f"wrote {trajectory.ticks + 1} frames to {args.frames}")
    print(summary(trajectory))


if __name__ == "__main__":
    main()

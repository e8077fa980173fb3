"""Painting on the host: a `Painter` owns one matplotlib figure (Agg, no display needed)
and, for each state, only updates its artists (the tiles, painted pixel by pixel; the
agent scatter; the health-bar and attack line collections; the counts in the header), so
hundreds of frames take seconds."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from nmmo_jax.config import GRASS, LAVA, N_STYLES, STYLE_NAMES, Config, Params
from nmmo_jax.config import params as make_params
from nmmo_jax.render.palette import (
    FROZEN_RIM,
    HEALTH_COLORS,
    STYLE_LOOKS,
    TILE_COLORS,
    population_colors,
)
from nmmo_jax.state import State

# The palette as opaque RGBA pixels packed into one uint32 each, [7].
_TILE_PIXELS = np.concatenate([TILE_COLORS, np.full((len(TILE_COLORS), 1), 255, np.uint8)],
                              1).view(np.uint32)[:, 0]

DPI = 100
TITLE_PX = 56  # the band above the panels: tick, live counts, key
MAP_PX = 800  # default side of the map panel in pixels
LAVA_MARGIN = 2  # lava tiles shown beyond the spawn ring
AGENT_TILES = 1.35  # disc diameter in tiles
BAR_PX = 3.5  # health bar thickness in pixels (at least)


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
    the painter's own figure. Health bars are scaled by the `max_health` of `params`,
    the rule numbers the realm plays by (None: its preset's).
    """

    def __init__(self, cfg: Config, zoom_agent: int | None = None, ax: Any = None,
                 map_px: int = MAP_PX, lava_margin: int | None = LAVA_MARGIN,
                 params: Params | None = None):
        if ax is not None and zoom_agent is not None:
            raise ValueError("zoom_agent needs the painter's own figure; leave ax=None")
        if zoom_agent is not None and not 0 <= zoom_agent < cfg.n_agents:
            raise ValueError(f"zoom_agent {zoom_agent} is not a slot in [0, {cfg.n_agents})")
        self.cfg, self.zoom_agent = cfg, zoom_agent
        rules = make_params(cfg.preset) if params is None else params
        self.max_health = float(rules.max_health)
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
        scene = _scene(state, self.max_health, self.colors, previous)
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


def _scene(state: State, max_health: float, colors: np.ndarray, previous: State | None
           ) -> dict[str, Any]:
    """What one frame shows, as numpy arrays ready for the artists; health bars are
    health / `max_health`.

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
    health = np.clip(np.asarray(agents.health)[live] / max_health, 0, 1)
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


def draw_frame(state: State, cfg: Config, ax: Any = None, zoom_agent: int | None = None,
               params: Params | None = None) -> Figure:
    """A figure of one realm's `state` (see `Painter`)."""
    return Painter(cfg, zoom_agent=zoom_agent, ax=ax, params=params).draw(state).figure


def frame(state: State, cfg: Config, zoom_agent: int | None = None,
          params: Params | None = None) -> np.ndarray:
    """One realm's `state` as an [h, w, 3] uint8 image (see `Painter`)."""
    return Painter(cfg, zoom_agent=zoom_agent, params=params).draw(state).image()


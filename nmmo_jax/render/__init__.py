"""Seeing the game: recorded rollouts, frames, GIFs, exploration maps and value maps.

Recording runs on device (`recording`): `record` plays a policy for T ticks inside one
`lax.scan` and returns a `Trajectory`, the stacked states of one realm (`record_batch`
and `pick` do the same for a vmapped batch of realms). Drawing runs on the host with
matplotlib (Agg, no display needed): a `Painter` (`painting`) owns one figure and, for
each state, only updates its artists, so hundreds of frames take seconds; `output`
writes them as a GIF or PNGs; `maps` draws exploration and value maps; `command` is the
command line.

A frame shows the realm inside its lava ring plus `LAVA_MARGIN` tiles of lava. Tiles use
a fixed palette (`TILE_COLORS`); agents are discs coloured by population
(`population_colors`) with a black rim (a thick ice-cyan rim while frozen) and a health
bar above them (red to green on black); last tick's attacks are lines from attacker to
target, one look per style (melee solid white, range dashed black, mage dotted ice
cyan). No population uses white, black or ice cyan. A band above the map gives the tick,
the live agents of each population next to its colour, and a key to the marks.

    python -m nmmo_jax.render --preset chaos --policy fighter --ticks 300 --out rollout.gif
"""

from nmmo_jax.render.command import main
from nmmo_jax.render.maps import (
    exploration_map,
    plot_exploration,
    plot_value_map,
    probe_observations,
    value_map,
)
from nmmo_jax.render.output import (
    iter_frames,
    save_frames,
    save_gif,
    show_gif,
    write_frames,
    write_gif,
)
from nmmo_jax.render.painting import (
    AGENT_TILES,
    BAR_PX,
    DPI,
    LAVA_MARGIN,
    MAP_PX,
    TITLE_PX,
    Painter,
    draw_frame,
    frame,
    map_window,
)
from nmmo_jax.render.palette import (
    FROZEN_RIM,
    HEALTH_COLORS,
    POP_COLORS,
    STYLE_LOOKS,
    TILE_COLORS,
    population_colors,
)
from nmmo_jax.render.recording import Trajectory, pick, record, record_batch, summary

__all__ = ["AGENT_TILES", "BAR_PX", "DPI", "FROZEN_RIM", "HEALTH_COLORS", "LAVA_MARGIN",
           "MAP_PX", "POP_COLORS", "STYLE_LOOKS", "TILE_COLORS", "TITLE_PX", "Painter",
           "Trajectory", "draw_frame", "exploration_map", "frame", "iter_frames", "main",
           "map_window", "pick", "plot_exploration", "plot_value_map", "population_colors",
           "probe_observations", "record", "record_batch", "save_frames", "save_gif",
           "show_gif", "summary", "value_map", "write_frames", "write_gif"]

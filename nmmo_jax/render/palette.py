"""The look of a frame: tile, population, attack and health colours.

No population colour is white, black or ice cyan: those mark attacks and freezing.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LinearSegmentedColormap, to_rgb

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

# Health bar colours from empty to full: bright enough to read on every tile.
HEALTH_COLORS = LinearSegmentedColormap.from_list("health", ["#ff1f1f", "#ffd400", "#1aff4a"])


def population_colors(n_pops: int) -> np.ndarray:
    """An RGB colour per population, [P, 3] float in [0, 1]: `POP_COLORS` for up to 12
    populations, evenly spaced samples of the "turbo" colour map beyond."""
    if n_pops <= len(POP_COLORS):
        return np.array([to_rgb(c) for c in POP_COLORS[:n_pops]])
    return colormaps["turbo"](np.linspace(0.05, 0.95, n_pops))[:, :3]

"""Rendering: recorded rollouts, frames of known states, GIFs, exploration and value maps."""

import jax
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

import nmmo_jax
from nmmo_jax import render
from nmmo_jax.config import FOREST, GRASS, LAVA, MELEE, N_FEATURES, WATER, Feature
from nmmo_jax.policies import forager, random_policy

TICKS = 150  # as in test_policies, so the compiled recording is shared


def rgb255(color) -> np.ndarray:
    return np.round(np.asarray(to_rgb(color)) * 255)


def close(pixel, color, tol: int = 3) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.asarray(color, int)) <= tol))


@pytest.fixture(scope="module")
def tiles(small_cfg) -> np.ndarray:
    """Lava ring of 3, grass inside, a water tile at (10, 10) and a forest at (12, 12)."""
    tiles = np.full((small_cfg.map_size,) * 2, LAVA, np.int8)
    tiles[3:-3, 3:-3] = GRASS
    tiles[10, 10] = WATER
    tiles[12, 12] = FOREST
    return tiles


@pytest.fixture(scope="module")
def scene(small_env, tiles):
    """Slot 1 (population 1, full health) at (20, 20) has hit slot 2 (population 2,
    frozen, half health) at (20, 22) with melee."""
    _, state = small_env.make_state(tiles, [
        {"slot": 1, "pos": (20, 20)}, {"slot": 2, "pos": (20, 22), "freeze": 2, "health": 5}])
    agents = state.agents.replace(last_style=state.agents.last_style.at[1].set(MELEE),
                                  last_target=state.agents.last_target.at[1].set(2))
    return state.replace(agents=agents)


@pytest.fixture(scope="module")
def trajectory(small_env, key):
    return jax.block_until_ready(render.record(small_env, forager, key, None, TICKS))


def shown_tiles(cfg) -> int:
    """Rows (and columns) a frame shows: inside the lava ring plus LAVA_MARGIN of lava."""
    return cfg.map_size - 2 * max(cfg.lava_border - render.LAVA_MARGIN, 0)


def test_frame_shows_tiles_agents_and_attacks_in_their_colours(small_cfg, scene):
    painter = render.Painter(small_cfg).draw(scene)
    image = painter.image()
    tile_px = render.MAP_PX // shown_tiles(small_cfg)
    assert image.shape == (render.TITLE_PX + tile_px * shown_tiles(small_cfg),
                           tile_px * shown_tiles(small_cfg), 3)
    assert image.dtype == np.uint8
    at = lambda row, col: image[painter.pixel(row, col)]  # noqa: E731
    assert close(at(1, 1), render.TILE_COLORS[LAVA])
    assert close(at(10, 10), render.TILE_COLORS[WATER])
    assert close(at(12, 12), render.TILE_COLORS[FOREST])
    assert close(at(15, 15), render.TILE_COLORS[GRASS])
    # Marker colours a little below the centres, clear of the attack line on top.
    assert close(at(20.25, 20), rgb255(render.POP_COLORS[1]))
    assert close(at(20.25, 22), rgb255(render.POP_COLORS[2]))
    assert close(at(20, 21), rgb255(render.STYLE_LOOKS[MELEE][0]), tol=30)
    # Rims: scan outward from each centre across the marker's edge.
    (y, x), (y2, x2) = painter.pixel(20, 20), painter.pixel(20, 22)
    assert any(close(p, (0, 0, 0), tol=60) for p in image[y + tile_px // 4, x - tile_px:x])
    assert any(close(p, rgb255(render.FROZEN_RIM), tol=40)
               for p in image[y2 + tile_px // 4, x2:x2 + tile_px])
    np.testing.assert_array_equal(render.frame(scene, small_cfg), image)


def test_frame_crops_the_lava_ring_to_a_thin_margin(small_cfg, scene):
    lo = small_cfg.lava_border - render.LAVA_MARGIN
    painter = render.Painter(small_cfg).draw(scene)
    height, width, _ = painter.image().shape
    # The first and last shown tiles fill the panel's edges; the tiles beyond are cut.
    assert painter.pixel(lo - 0.5, lo - 0.5) == (render.TITLE_PX, 0)
    hi = small_cfg.map_size - lo
    assert painter.pixel(hi - 0.5, hi - 0.5) == (height, width)
    whole = render.Painter(small_cfg, lava_margin=None).draw(scene)
    tile_px = render.MAP_PX // small_cfg.map_size
    assert whole.image().shape == (render.TITLE_PX + tile_px * small_cfg.map_size,
                                   tile_px * small_cfg.map_size, 3)


def health_bar(painter, col: int, health: float) -> tuple[int, int]:
    """(length, thickness) in pixels of the bar in the colour of `health` (a fraction) over
    the agent at row 20, column `col`."""
    image = painter.image()
    tile_px = render.MAP_PX // shown_tiles(painter.cfg)
    color = np.round(np.asarray(render.HEALTH_COLORS(health)[:3]) * 255)
    y, x = painter.pixel(19.05, col)  # the bar's row, above the disc
    length = sum(close(p, color, tol=10) for p in image[y, x - tile_px:x + tile_px])
    x_fill = x - int(0.6 * tile_px) + 2  # inside the filled part
    column = image[y - tile_px // 2:y + tile_px // 2, x_fill]
    return length, sum(close(p, color, tol=10) for p in column)


def test_health_bars_are_thick_and_as_long_as_the_health(small_cfg, scene):
    """Slot 1 has full health and slot 2 half: slot 2's coloured bar is half as long, and
    both are at least BAR_PX pixels thick."""
    painter = render.Painter(small_cfg).draw(scene)
    (full, full_thickness), (half, half_thickness) = (
        health_bar(painter, 20, 1.0), health_bar(painter, 22, 0.5))
    assert min(full_thickness, half_thickness) >= render.BAR_PX
    assert full >= render.MAP_PX // shown_tiles(small_cfg)  # 1.2 tiles long when full
    assert abs(half / full - 0.5) < 0.1


def test_health_bars_follow_the_realms_max_health(small_cfg, scene):
    """Under params with max_health 20, slot 1's 10 health is half a bar, drawn as long
    and in the same colour as half health under the preset's max_health of 10."""
    preset = health_bar(render.Painter(small_cfg).draw(scene), 22, 0.5)
    doubled = render.Painter(small_cfg, params=nmmo_jax.params("chaos", max_health=20))
    length, thickness = health_bar(doubled.draw(scene), 20, 0.5)
    assert abs(length - preset[0]) <= 1 and thickness == preset[1]  # 1 px: rounding


def test_attack_and_frozen_colours_belong_to_no_population():
    marks = [to_rgb(color) for color, _ in render.STYLE_LOOKS] + [to_rgb(render.FROZEN_RIM)]
    pops = render.population_colors(len(render.POP_COLORS))
    distance = np.linalg.norm(np.asarray(marks)[:, None] - pops[None], axis=-1) * 255
    assert distance.min() > 75, distance.min()
    styles = np.asarray(marks[:3])
    apart = np.linalg.norm(styles[:, None] - styles[None], axis=-1)[np.triu_indices(3, 1)]
    assert apart.min() > 0.5, apart


def test_header_labels_the_counts_and_keys_every_mark(small_cfg, scene):
    painter = render.Painter(small_cfg).draw(scene)
    texts = [t.get_text() for t in painter.figure.findobj(Text) if t.get_text()]
    header = " ".join(texts)
    for label in ("tick 0", "alive 2", "alive per population", "attacks", "melee", "range",
                  "mage", "frozen", "health"):
        assert label in header, (label, texts)
    # One count per population after "alive per population": slots 1 and 2 live.
    counts = texts[texts.index("alive per population:") + 1:][:small_cfg.n_pops]
    assert counts == ["0", "1", "1", "0"]


def test_view_boxes_stay_inside_their_panels(small_env, small_cfg, tiles):
    """An agent on the spawn ring's corner sees lava beyond the shown tiles: on the map
    its view box is cut to the panel; in the zoom panel it lies wholly inside."""
    corner = small_cfg.lava_border
    _, state = small_env.make_state(tiles, [{"slot": 5, "pos": (corner, corner)}])
    painter = render.Painter(small_cfg, zoom_agent=5).draw(state)
    for layer in (painter.main, painter.zoom):
        assert layer.view.get_visible()
        box = layer.view.get_bbox()
        (x0, x1), (y1, y0) = layer.ax.get_xlim(), layer.ax.get_ylim()
        assert x0 < box.x0 < box.x1 < x1 and y0 < box.y0 < box.y1 < y1, (box, x0, x1)
    zoom_box = painter.zoom.view.get_bbox()
    side = small_cfg.view_size
    assert (zoom_box.width, zoom_box.height) == (side, side)
    assert zoom_box.x0 == corner - small_cfg.view_radius - 0.5


def test_zoom_panel_doubles_the_width(small_cfg, scene):
    plain = render.frame(scene, small_cfg)
    zoomed = render.frame(scene, small_cfg, zoom_agent=1)
    assert zoomed.shape == (plain.shape[0], 2 * plain.shape[1], 3)


def test_draw_frame_into_given_axes(small_cfg, scene):
    figure = Figure(dpi=50)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    assert render.draw_frame(scene, small_cfg, ax=ax) is figure
    assert ax.get_title().startswith("tick 0")
    image = np.asarray(figure.canvas.buffer_rgba())[..., :3]
    for (row, col), tile in (((10, 10), WATER), ((12, 12), FOREST), ((15, 15), GRASS)):
        x, y = ax.transData.transform((col, row))
        assert close(image[int(figure.bbox.height - y), int(x)], render.TILE_COLORS[tile])


def test_a_painter_figure_saves_at_another_resolution(small_cfg, scene, tmp_path):
    painter = render.Painter(small_cfg).draw(scene)
    height, width, _ = painter.image().shape
    painter.figure.savefig(tmp_path / "frame.png", dpi=2 * render.DPI)
    with Image.open(tmp_path / "frame.png") as png:
        image = np.asarray(png.convert("RGB"))
    assert image.shape == (2 * height, 2 * width, 3)
    y, x = painter.pixel(10, 10)
    assert close(image[2 * y, 2 * x], render.TILE_COLORS[WATER])


def test_population_colours_are_distinct():
    for n in (4, 12, 20):
        colors = render.population_colors(n)
        assert colors.shape == (n, 3)
        assert len({tuple(np.round(c, 3)) for c in colors}) == n


def test_record_stacks_every_tick_and_keeps_final_visits(trajectory, small_cfg):
    states = trajectory.states
    p, side = small_cfg.n_pops, small_cfg.map_size
    assert trajectory.ticks == TICKS
    np.testing.assert_array_equal(states.tick, np.arange(TICKS + 1))
    assert states.agents.pos.shape == (TICKS + 1, small_cfg.n_agents, 2)
    assert states.visits.shape == (TICKS + 1, p, 0, 0)
    assert trajectory.visits.shape == (p, side, side)
    # Every live agent of every recorded state adds one visit.
    assert int(trajectory.visits.sum()) == int(states.agents.alive.sum())


def test_record_from_a_given_realm_starts_there(small_env, scene):
    traj = render.record(small_env, forager, jax.random.key(1), None, TICKS, scene)
    np.testing.assert_array_equal(traj.states.agents.pos[0], scene.agents.pos)
    assert traj.states.agents.alive[0].sum() == 2


def test_record_batch_and_pick_one_realm(small_env, small_cfg):
    batch = render.record_batch(small_env, random_policy, jax.random.key(2), None, 4, 3)
    assert batch.states.tick.shape == (3, 5)
    one = render.pick(batch, 1)
    assert one.states.agents.pos.shape == (5, small_cfg.n_agents, 2)
    assert one.cfg == small_cfg
    assert not np.array_equal(batch.states.terrain[0, 0], batch.states.terrain[1, 0])


def test_gif_has_one_frame_per_recorded_state(trajectory, tmp_path):
    ticks = 4
    short = render.Trajectory(states=jax.tree.map(lambda x: x[:ticks + 1], trajectory.states),
                              info=jax.tree.map(lambda x: x[:ticks], trajectory.info),
                              visits=trajectory.visits, params=trajectory.params,
                              cfg=trajectory.cfg)
    path = render.save_gif(short, tmp_path / "rollout.gif", fps=5, progress=False)
    with Image.open(path) as gif:
        assert gif.n_frames == ticks + 1
        assert gif.info["duration"] == 200
    pngs = render.save_frames(short.states, tmp_path / "frames", cfg=short.cfg, progress=False)
    assert len(pngs) == ticks + 1
    with Image.open(pngs[-1]) as png:
        side = (render.MAP_PX // shown_tiles(short.cfg)) * shown_tiles(short.cfg)
        assert png.size == (side, side + render.TITLE_PX)


def test_summary_reports_deaths_and_lifetime(trajectory):
    text = render.summary(trajectory)
    assert f"ticks {TICKS}" in text and "starvation" in text


def test_exploration_map_colours_follow_the_counts():
    visits = np.zeros((3, 2, 3), np.int32)
    visits[1, 0, 0], visits[0, 0, 0] = 5, 2  # pop 1 leads, 7 visits: the brightest tile
    visits[2, 0, 1] = 1  # one visit by pop 2
    visits[0, 1, 2] = 3  # three visits by pop 0
    colors = render.population_colors(3)
    image = render.exploration_map(visits).astype(float)
    assert close(image[0, 0], colors[1] * 255, tol=1)
    scale = lambda n: 0.35 + 0.65 * np.log1p(n) / np.log1p(7)  # noqa: E731
    assert close(image[0, 1], colors[2] * 255 * scale(1), tol=1)
    assert close(image[1, 2], colors[0] * 255 * scale(3), tol=1)
    assert np.all(image[1, 0] == 0)  # unvisited, no terrain given
    terrain = np.full((2, 3), WATER)
    shaded = render.exploration_map(visits, terrain)
    assert close(shaded[1, 0], render.TILE_COLORS[WATER] * 0.2, tol=1)
    render.plot_exploration(visits, terrain)


def test_value_map_probes_every_walkable_tile_once(small_env, small_cfg, scene, tiles):
    sizes = []

    @jax.custom_batching.custom_vmap
    def counted(x):
        return x

    @counted.def_vmap
    def counted_rule(axis_size, in_batched, x):
        sizes.append(axis_size)
        return x, in_batched[0]

    side = small_cfg.map_size

    def value_fn(obs):
        assert obs.own.shape == (N_FEATURES,)  # one probe, no agent axis
        own = obs.own
        return counted(3.0 * own[Feature.ROW] - 2.0 * own[Feature.COL] + own[Feature.HEALTH])

    values = render.value_map(small_env, scene, None, value_fn)
    walkable = (tiles != LAVA) & (tiles != WATER)
    assert sizes == [int(walkable.sum())]
    rows, cols = np.indices(tiles.shape)
    # A fresh probe has full health: feature (max - max/2) / max = 0.5.
    expected = 3.0 * (rows - side / 2) / side - 2.0 * (cols - side / 2) / side + 0.5
    np.testing.assert_allclose(values[walkable], expected[walkable], atol=1e-5)
    assert np.all(np.isnan(values[~walkable]))
    render.plot_value_map(values, tiles)


def test_probe_replaces_nobody_in_a_realm_with_free_slots(small_env, scene):
    positions, obs = render.probe_observations(small_env, scene)
    assert np.all(obs.alive) and np.all(obs.population == 0)  # slot 0 is free
    # The probe on (20, 21) sees both scene agents next to it.
    index = np.flatnonzero((positions[:, 0] == 20) & (positions[:, 1] == 21))[0]
    assert int(obs.entity_mask[index].sum()) == 3

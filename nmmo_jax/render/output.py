"""Output of recorded rollouts: frames drawn one after another on one figure, written as
a looping GIF or PNG files, or shown in a notebook."""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable, Iterator
from typing import Any

import jax
import numpy as np
from PIL import Image

from nmmo_jax.config import Config, Params
from nmmo_jax.progress import tqdm
from nmmo_jax.render.painting import Painter
from nmmo_jax.render.recording import Trajectory
from nmmo_jax.state import State


def iter_frames(trajectory: Trajectory | State, cfg: Config | None = None,
                zoom_agent: int | None = None, progress: bool = True
                ) -> Iterator[np.ndarray]:
    """The frames of a recorded rollout, one [h, w, 3] uint8 image per state, drawn on
    one reused figure; `trajectory` is a `Trajectory` or a stacked `State` (then `cfg` is
    required, and health bars follow its preset's `max_health`). Shows a tqdm bar when
    `progress`."""
    states, cfg, params = _states_and_config(trajectory, cfg)
    states = jax.device_get(states)
    painter = Painter(cfg, zoom_agent=zoom_agent, params=params)
    count = states.tick.shape[0]
    previous = None
    for t in tqdm(range(count), desc="drawing", unit="frame", disable=not progress):
        state = jax.tree.map(operator.itemgetter(t), states)
        yield painter.draw(state, previous).image()
        previous = state


def _states_and_config(trajectory: Trajectory | State, cfg: Config | None
                       ) -> tuple[State, Config, Params | None]:
    """The stacked states, their config and their params (None: the preset's)."""
    if isinstance(trajectory, Trajectory):
        return trajectory.states, cfg or trajectory.cfg, trajectory.params
    if cfg is None:
        raise ValueError("drawing a stacked State needs cfg=")
    return trajectory, cfg, None


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

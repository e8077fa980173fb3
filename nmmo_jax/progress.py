"""The progress bar every command uses: tqdm's notebook bar in Jupyter, a text bar
elsewhere.

In Jupyter without ipywidgets, `tqdm.auto` warns "IProgress not found" and falls back to
a text bar; the text bar is what we want there, so the warning is silenced.
"""

import warnings

from tqdm import TqdmWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)
    from tqdm.auto import tqdm

__all__ = ["tqdm"]

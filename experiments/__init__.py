"""The paper's findings as experiments: one script each, figures (PNG) and numbers (JSON).

- `exploration`: trained populations explore more of the map the more agents share it.
- `niches`: the populations of one realm visit different parts of it.
- `tournament`: agents trained among many outlive agents trained among few.

`common` holds what the three share: the command line, training a setting to a budget
of live agent-steps, the measurement rollout, intervals, plots, JSON and verdict lines.
"""

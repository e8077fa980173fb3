"""Flax (linen) policy-value networks for one population, and their action distribution.

Every network reads an `nmmo_jax.Observation` with any leading batch shape [...] and
returns a `PolicyOutput`. It reads as well the `Inputs` its `inputs(obs)` makes of an
observation: the window in the form its first layer takes, which the trainer stores
for each sample so that the window is prepared once, not once per epoch.

  move_logits    [..., 5]     stay / east / south / west / north, MASKED where
                              `move_mask` is False (a move that changes nothing)
  style_logits   [..., 3]     melee / range / mage
  target_logits  [..., 3, K]  a score for every entity slot under every style, masked
                              by that style's row of `target_mask`
  value          [...]

`ReferencePolicy` is the architecture of SPEC §8 (H = 32): tile ids embedded 7 -> 7 and
concatenated with the agent counts (15 * 15 * 8 inputs) -> Dense H; own features ->
Dense H; entity features -> Dense H, max-pooled over the filled entity slots; the three
concatenated -> Dense H. `FovealPolicy` (the trainer's default) is the same network
with the window read as a sharp 5 x 5 centre and a surround pooled in 3 x 3 blocks (400
inputs instead of 1,800): a fifth of the window layer's work, and in two-seed probes it
learned faster per sample as well. `LargePolicy` is wider, reads the window with a
small conv net and lets the entities attend to each other before pooling.

The target head scores slot k under style s as <q_s, e_k> / sqrt(H): the query q_s is a
Dense of the state concatenated with style s's embedding, e_k slot k's encoded features
(the encoder's per-entity output before pooling). Scoring every style at once keeps the
network a function of the observation alone; the action distribution then picks the row
of the sampled style.
Slot 0 (the agent itself, the no-op target) gets a learned per-style offset on its
score, initialised to `noop_bias` (TrainConfig's default 3): an untrained policy then
mostly does not attack, instead of hitting random neighbours.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

import nmmo_jax
from nmmo_jax.config import N_MOVES, N_STYLES, N_TILE_TYPES

MASKED = -1e9  # logit of an illegal choice: probability 0, entropy term 0, no NaN


class Inputs(NamedTuple):
    """What a network reads of an observation (leaves [..., ...]), from `inputs(obs)`."""

    window: Any  # the window encoder's input: (tiles, counts), or FovealEncoder's cells
    own: jax.Array
    entities: jax.Array
    entity_mask: jax.Array
    target_mask: jax.Array
    move_mask: jax.Array


def raw_inputs(obs: nmmo_jax.Observation, window: Any) -> Inputs:
    """`Inputs` of `obs` with `window` as the window's part."""
    return Inputs(window, obs.own, obs.entities, obs.entity_mask, obs.target_mask,
                  obs.move_mask)


class PolicyOutput(NamedTuple):
    """Logits of the three action heads and the value; see the module docstring."""

    move_logits: jax.Array  # [..., 5], MASKED where move_mask is False
    style_logits: jax.Array  # [..., 3]
    target_logits: jax.Array  # [..., 3, K], MASKED where target_mask is False
    value: jax.Array  # [...]


class TargetQuery(nn.Module):
    """Dense(2H -> H) of [state, style embedding] for each of the 3 styles, [..., 3, H].

    Its parameters are those of one `nn.Dense` on the concatenation; the kernel is applied
    in two halves, so the state is multiplied once rather than once per style.
    """

    hidden: int

    @nn.compact
    def __call__(self, state: jax.Array, style_emb: jax.Array) -> jax.Array:
        # state [..., H], style_emb [3, H]
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (2 * self.hidden, self.hidden))
        bias = self.param("bias", nn.initializers.zeros, (self.hidden,))
        per_style = style_emb @ kernel[self.hidden:] + bias  # [3, H]
        return (state @ kernel[:self.hidden])[..., None, :] + per_style


class Heads(nn.Module):
    """Move, style, target and value heads on a state vector and encoded entities."""

    hidden: int
    noop_bias: float = 0.0

    @nn.compact
    def __call__(self, state: jax.Array, entities: jax.Array, target_mask: jax.Array,
                 move_mask: jax.Array) -> PolicyOutput:
        # state [..., H], entities [..., K, H], target_mask [..., 3, K], move_mask [..., 5]
        move = jnp.where(move_mask, nn.Dense(N_MOVES, name="move")(state), MASKED)
        style = nn.Dense(N_STYLES, name="style")(state)
        style_emb = self.param("style_embedding", nn.initializers.normal(1.0),
                               (N_STYLES, self.hidden))  # [3, H]
        query = TargetQuery(self.hidden, name="target_query")(state, style_emb)  # [..., 3, H]
        scores = jnp.einsum("...sh,...kh->...sk", query, entities) / jnp.sqrt(self.hidden)
        # Slot 0 is the agent itself (the no-op target); a learned per-style offset on its
        # score, initialised to `noop_bias`, starts the policy mostly not attacking.
        noop = self.param("noop_bias", nn.initializers.constant(self.noop_bias), (N_STYLES,))
        scores = scores.at[..., 0].add(noop)
        target = jnp.where(target_mask, scores, MASKED)
        value = nn.Dense(1, name="value")(state)[..., 0]
        return PolicyOutput(move, style, target, value)


def _masked_max(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Max over the entity axis (-2) of the filled slots, 0 when none is filled."""
    pooled = jnp.max(jnp.where(mask[..., None], x, -jnp.inf), axis=-2)
    return jnp.where(jnp.any(mask, axis=-1)[..., None], pooled, 0.0)


class WindowEncoder(nn.Module):
    """Dense(features) of the window's embedded tile ids concatenated with its counts.

    The parameters are those of SPEC §8's layer: a 7 -> E tile embedding and a kernel over
    the V * V * (E + 1) flattened inputs. It is computed in an equal, cheaper form: the
    embedding is folded into the kernel (a [V*V, 7, features] table), which is applied to
    the one-hot tile ids; the gradient then needs no scatter into the embedding.
    """

    features: int
    embed: int = N_TILE_TYPES

    @staticmethod
    def inputs(tiles: jax.Array, counts: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The window as this encoder reads it: the tiles and counts themselves."""
        return tiles, counts

    @nn.compact
    def __call__(self, window: tuple[jax.Array, jax.Array]) -> jax.Array:
        tiles, counts = window  # [..., V, V] int8 each -> [..., features]
        batch, cells = tiles.shape[:-2], tiles.shape[-2] * tiles.shape[-1]
        embedding = self.param("embedding", nn.initializers.normal(1.0),
                               (N_TILE_TYPES, self.embed))  # [7, E]
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (cells * (self.embed + 1), self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        kernel = kernel.reshape(cells, self.embed + 1, self.features)
        folded = jnp.einsum("te,cef->ctf", embedding, kernel[:, :self.embed])  # [V*V, 7, F]
        one_hot = tiles.reshape(batch + (cells, 1)) == jnp.arange(N_TILE_TYPES, dtype=tiles.dtype)
        one_hot = one_hot.astype(jnp.float32).reshape(batch + (cells * N_TILE_TYPES,))
        counts = counts.reshape(batch + (cells,)).astype(jnp.float32)
        return (one_hot @ folded.reshape(-1, self.features)
                + counts @ kernel[:, self.embed] + bias)


FOVEA, BLOCK = 2, 3  # FovealEncoder's sharp centre radius and surround block side


class FovealEncoder(nn.Module):
    """Dense(features) of a sharp centre and a pooled surround of the window.

    Each tile is its one-hot id and its agent count (8 channels). The centre, the
    (2 * FOVEA + 1)^2 tiles around the agent, goes in tile by tile; the whole window goes
    in as blocks of BLOCK x BLOCK tiles, each the mean of its tiles' channels (the share
    of water, forest, ... in the block and its mean count). With V = 15 that is 25 + 25
    cells of 8 channels, 400 inputs instead of the reference's 1,800: a fifth of the
    window layer's work, keeping where things are near the agent and which way they lie
    farther off. `inputs` sums the cells' channels as int16 (exact); the layer divides
    the blocks' sums by the tiles in a block.
    """

    features: int

    @staticmethod
    def inputs(tiles: jax.Array, counts: jax.Array) -> jax.Array:
        """The cells' channel sums, [..., C, 8] int16: C = (2 FOVEA + 1)^2 centre tiles,
        then the blocks row by row (a ragged edge is zero-padded)."""
        v, batch = tiles.shape[-1], tiles.shape[:-2]
        cells = jnp.concatenate(
            [(tiles[..., None] == jnp.arange(N_TILE_TYPES, dtype=tiles.dtype)),
             counts[..., None]], axis=-1).astype(jnp.int16)  # [..., V, V, 8]
        c, f = v // 2, min(FOVEA, v // 2)
        centre = cells[..., c - f:c + f + 1, c - f:c + f + 1, :]
        side = -(-v // BLOCK)  # blocks per side
        pad = [(0, 0)] * len(batch) + [(0, side * BLOCK - v)] * 2 + [(0, 0)]
        blocks = jnp.pad(cells, pad).reshape(batch + (side, BLOCK, side, BLOCK, 8))
        surround = blocks.sum(axis=(-4, -2), dtype=jnp.int16)  # [..., side, side, 8]
        return jnp.concatenate([centre.reshape(batch + (-1, 8)),
                                surround.reshape(batch + (-1, 8))], axis=-2)

    @nn.compact
    def __call__(self, cells: jax.Array) -> jax.Array:
        # cells [..., C, 8] int16 (from `inputs`) -> [..., features]
        n_centre = (2 * FOVEA + 1) ** 2
        tiles_per_cell = jnp.where(jnp.arange(cells.shape[-2]) < n_centre, 1.0, BLOCK ** 2)
        flat = cells.astype(jnp.float32) / tiles_per_cell[:, None]
        return nn.Dense(self.features, name="dense")(flat.reshape(cells.shape[:-2] + (-1,)))


class ReferencePolicy(nn.Module):
    """SPEC §8's encoder (embed + linear layers, H = 32) with the shared heads."""

    hidden: int = 32
    noop_bias: float = 0.0
    window: ClassVar[type[nn.Module]] = WindowEncoder

    def inputs(self, obs: nmmo_jax.Observation) -> Inputs:
        """What this network reads of `obs` (param-free; callable on the unbound module)."""
        return raw_inputs(obs, self.window.inputs(obs.tiles, obs.counts))

    @nn.compact
    def __call__(self, obs: nmmo_jax.Observation | Inputs) -> PolicyOutput:
        obs = obs if isinstance(obs, Inputs) else self.inputs(obs)
        h = self.hidden
        grid = nn.relu(self.window(h, name="grid")(obs.window))
        own = nn.relu(nn.Dense(h, name="own")(obs.own))
        entities = nn.relu(nn.Dense(h, name="entities")(obs.entities))  # [..., K, H]
        pooled = _masked_max(entities, obs.entity_mask)
        state = nn.relu(nn.Dense(h, name="state")(
            jnp.concatenate([grid, own, pooled], axis=-1)))
        return Heads(h, self.noop_bias, name="heads")(state, entities, obs.target_mask,
                                                       obs.move_mask)


class FovealPolicy(ReferencePolicy):
    """The reference network with the window read by `FovealEncoder`: the same state,
    entity and head layers, a fifth of the window layer's work."""

    window: ClassVar[type[nn.Module]] = FovealEncoder


class LargePolicy(nn.Module):
    """A wider encoder: conv net over the window, self-attention over the entities."""

    hidden: int = 128
    heads: int = 4
    noop_bias: float = 0.0

    def inputs(self, obs: nmmo_jax.Observation) -> Inputs:
        """What this network reads of `obs`: the tiles and counts as they are."""
        return raw_inputs(obs, (obs.tiles, obs.counts))

    @nn.compact
    def __call__(self, obs: nmmo_jax.Observation | Inputs) -> PolicyOutput:
        obs = obs if isinstance(obs, Inputs) else self.inputs(obs)
        h = self.hidden
        tiles, counts = obs.window
        batch = tiles.shape[:-2]
        tiles = nn.Embed(N_TILE_TYPES, 8, name="tile_embedding")(tiles.astype(jnp.int32))
        counts = counts.astype(jnp.float32)[..., None]
        grid = jnp.concatenate([tiles, counts], axis=-1)  # [..., V, V, 9]
        grid = grid.reshape((-1,) + grid.shape[-3:])  # [B, V, V, 9]
        grid = nn.relu(nn.Conv(32, (3, 3), name="conv1")(grid))
        grid = nn.relu(nn.Conv(32, (3, 3), strides=(2, 2), name="conv2")(grid))
        grid = grid.reshape(batch + (-1,))
        grid = nn.relu(nn.Dense(h, name="grid")(grid))
        own = nn.relu(nn.Dense(h, name="own")(obs.own))
        entities = nn.relu(nn.Dense(h, name="entities")(obs.entities))  # [..., K, H]
        pair_mask = obs.entity_mask[..., None, :, None] & obs.entity_mask[..., None, None, :]
        attended = nn.MultiHeadDotProductAttention(self.heads, name="attention")(
            entities, mask=pair_mask)  # [..., K, H]
        entities = nn.LayerNorm(name="attention_norm")(entities + attended)
        pooled = _masked_max(entities, obs.entity_mask)
        state = nn.relu(nn.Dense(h, name="state1")(
            jnp.concatenate([grid, own, pooled], axis=-1)))
        state = nn.relu(nn.Dense(h, name="state2")(state))
        return Heads(h, self.noop_bias, name="heads")(state, entities, obs.target_mask,
                                                       obs.move_mask)


NETWORKS = {"reference": ReferencePolicy, "foveal": FovealPolicy, "large": LargePolicy}


def make_network(name: str = "foveal", hidden: int | None = None,
                 noop_bias: float = 0.0) -> nn.Module:
    """The network called `name` (a key of `NETWORKS`), with its default width unless
    `hidden` is given; `noop_bias` initialises the target head's offset on the no-op
    (self) target."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of {sorted(NETWORKS)}")
    kwargs = {} if hidden is None else {"hidden": hidden}
    return NETWORKS[name](noop_bias=noop_bias, **kwargs)


class ActionDist(NamedTuple):
    """The joint action distribution of a `PolicyOutput`: move x style x target | style.

    The target is drawn from the row of the sampled style. `log_prob` sums the three
    heads' log-probabilities. `entropy` is H(move) + H(style) + H(target | style), the
    last taken at the given (sampled or taken) style rather than averaged over styles.
    """

    out: PolicyOutput

    def sample(self, key: jax.Array) -> nmmo_jax.Actions:
        move_key, style_key, target_key = jax.random.split(key, 3)
        move = distrax.Categorical(logits=self.out.move_logits).sample(seed=move_key)
        style = distrax.Categorical(logits=self.out.style_logits).sample(seed=style_key)
        target = distrax.Categorical(logits=self._target_logits(style)).sample(seed=target_key)
        return nmmo_jax.Actions(move.astype(jnp.int32), style.astype(jnp.int32),
                                target.astype(jnp.int32))

    def _target_logits(self, style: jax.Array) -> jax.Array:
        return jnp.take_along_axis(self.out.target_logits, style[..., None, None], axis=-2
                                   )[..., 0, :]  # [..., K]

    def log_prob(self, actions: nmmo_jax.Actions) -> jax.Array:
        return (distrax.Categorical(logits=self.out.move_logits).log_prob(actions.move)
                + distrax.Categorical(logits=self.out.style_logits).log_prob(actions.style)
                + distrax.Categorical(logits=self._target_logits(actions.style)
                                      ).log_prob(actions.target))

    def entropy(self, style: jax.Array) -> jax.Array:
        return (distrax.Categorical(logits=self.out.move_logits).entropy()
                + distrax.Categorical(logits=self.out.style_logits).entropy()
                + distrax.Categorical(logits=self._target_logits(style)).entropy())

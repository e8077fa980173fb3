"""The building blocks behind the observation and the tick's randomness, against plain
numpy: bit selection, the view-order bitsets, spawn's k-th highest priority and the
per-tile regrowth draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nmmo_jax import game, observe


def test_nth_set_bit_finds_each_set_bit_in_order():
    rng = np.random.default_rng(0)
    words = rng.integers(1, 2**observe.WORD_BITS, size=200, dtype=np.int64)
    for word in words:
        bits = [b for b in range(observe.WORD_BITS) if word >> b & 1]
        found = observe._nth_set_bit(jnp.full(len(bits), word, jnp.int32),
                                     jnp.arange(len(bits), dtype=jnp.int32))
        assert list(np.asarray(found)) == bits


def test_occupied_words_hold_the_tiles_in_view_order(small_cfg):
    cfg = small_cfg
    v, r, n = cfg.view_size, cfg.view_radius, 6
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 3, size=(n, v, v)) * (rng.random((n, v, v)) < 0.2)
    alive = np.array([True, True, False, True, False, True])
    counts[alive, r, r] += 1  # a live observer stands on its own tile
    words = np.asarray(observe.occupied_words(jnp.asarray(counts, jnp.int8),
                                              jnp.asarray(alive), cfg))
    order = observe.view_order(cfg)
    for i in range(n):
        others = counts[i].copy()
        others[r, r] -= alive[i]
        bits = [t for t in range(len(order)) if words[i, t // observe.WORD_BITS]
                >> (t % observe.WORD_BITS) & 1]
        assert bits == [t for t, (dr, dc) in enumerate(order) if others[r + dr, r + dc] > 0]


@pytest.mark.parametrize("free", [0, 1, 5, 16])
def test_kth_highest_priority_takes_the_k_highest_free_slots(free):
    rng = np.random.default_rng(free)
    priority = np.full(16, -1, np.int32)
    slots = rng.choice(16, size=free, replace=False)
    priority[slots] = rng.choice(2**30, size=free, replace=False)
    for k in range(18):
        threshold = int(game._kth_highest(jnp.asarray(priority), jnp.int32(k)))
        taken = set(np.flatnonzero(priority >= threshold))
        assert taken == set(slots[np.argsort(-priority[slots])][:k])


def test_tile_bits_regrow_at_the_rate_and_differ_by_key():
    shape, p = (80, 80), 0.25
    draws = [np.asarray(game.tile_bits(jax.random.bits(jax.random.key(s), (2,), jnp.uint32),
                                       shape)) for s in range(8)]
    rates = [np.mean((d >> 16) < round(p * 65536)) for d in draws]
    assert all(abs(rate - p) < 0.03 for rate in rates), rates  # 6400 tiles: sd 0.0054
    assert all(np.mean(a == b) < 0.01 for a, b in zip(draws, draws[1:], strict=False))

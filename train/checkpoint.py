"""Checkpoints: the whole runner state (parameters, optimiser state, env states, RNG key,
update counter) and the run's config, in one checksummed msgpack file.

A file is `MAGIC`, a SHA-256 digest of the payload, then the payload: a msgpack map
{"config": TrainConfig fields, "meta": small host-side facts, "leaves": {path: array}}
where every array of the runner pytree is stored under its key path. Restoring matches
the stored arrays to a freshly built template leaf by leaf, so a resumed run continues
bit for bit; each array is laid out as its template leaf is (its sharding), so a run
over several devices or processes gets every shard back where it lives. The file holds
the whole state whatever the device count, so a run may resume on another number of
devices. A truncated or altered file, a file of another kind, another config or other
shapes raise `CheckpointError` with the reason.

Writes are atomic and durable: the bytes go to `<name>.tmp`, are flushed to disk
(fsync), renamed over the checkpoint, and the rename is flushed by an fsync of the
folder. A kill at any moment leaves the previous or the new checkpoint whole; at worst a
stale `.tmp` remains, which `read` never looks at and `remove_stale` deletes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

MAGIC = b"NMMO-JAX-CKPT-1\n"
# Config fields that may change between a run and its resumption: they do not affect
# what an update computes, or (devices) only how its minibatches are drawn.
RESUMABLE_CHANGES = frozenset({"total_steps", "out", "checkpoint_every", "eval_ticks",
                               "devices"})


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, not a checkpoint, or mismatched."""


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _flatten(tree: Any) -> dict[str, Any]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def save(path: str | os.PathLike, runner: Any, config: Any, meta: dict[str, Any] | None = None
         ) -> None:
    """Writes `runner` (any pytree of arrays, PRNG keys included) and `config` (a
    dataclass) to `path`, atomically and durably (see the module docstring)."""
    leaves = {name: np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
              for name, leaf in _flatten(runner).items()}
    payload = serialization.msgpack_serialize({
        "config": dataclasses.asdict(config), "meta": meta or {}, "leaves": leaves})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with open(tmp, "wb") as f:
        f.write(MAGIC + hashlib.sha256(payload).digest() + payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_folder(path.parent)


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary file `save` writes before renaming it to `path`."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def remove_stale(path: str | os.PathLike) -> bool:
    """Deletes the temporary file that a `save` to `path` killed mid-write left behind;
    returns whether there was one."""
    tmp = temp_path(path)
    if not tmp.exists():
        return False
    tmp.unlink()
    return True


def _fsync_folder(folder: Path) -> None:
    """Flushes a folder's entries (a rename in it) to disk; POSIX only (elsewhere a
    folder cannot be opened for fsync)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The checked contents of a checkpoint file: {"config", "meta", "leaves"}."""
    try:
        blob = Path(path).read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    if not blob.startswith(MAGIC):
        raise CheckpointError(f"{path} is not an nmmo-jax checkpoint (bad header)")
    digest, payload = blob[len(MAGIC):len(MAGIC) + 32], blob[len(MAGIC) + 32:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"{path} is corrupt: checksum mismatch (truncated or altered)")
    try:
        return serialization.msgpack_restore(payload)
    except Exception as err:  # msgpack raises several types on malformed data
        raise CheckpointError(f"{path} is corrupt: {err}") from err


def check_config(stored: dict[str, Any], config: Any, path: Any = "checkpoint") -> None:
    """Raises `CheckpointError` naming every field (other than `RESUMABLE_CHANGES`) where
    the stored config differs from `config`; a field the checkpoint lacks (written before
    the field existed) counts as its default."""
    current = dataclasses.asdict(config)
    fields = {field.name: field.default for field in dataclasses.fields(config)}
    diffs = [f"{name}: checkpoint {stored.get(name, fields[name])!r}, now {current[name]!r}"
             for name in current if name not in RESUMABLE_CHANGES
             and stored.get(name, fields[name]) != current[name]]
    if diffs:
        raise CheckpointError(f"{path} was written by another config; differing fields: "
                              + "; ".join(diffs))


def restore(path: str | os.PathLike, template: Any, config: Any | None = None,
            prefix: str = "") -> tuple[Any, dict[str, Any]]:
    """Loads a checkpoint into the structure of `template` (a runner pytree of the same
    shapes, arrays or `jax.ShapeDtypeStruct`s); returns (runner, meta). With `config`, the
    stored config must match it. With `prefix` (e.g. ".params"), `template` is the part
    of the runner stored under that key path."""
    contents = read(path)
    if config is not None:
        check_config(contents["config"], config, path)
    stored = {name[len(prefix):]: value for name, value in contents["leaves"].items()
              if name.startswith(prefix)}
    flat = _flatten(template)
    missing, extra = set(flat) - set(stored), set(stored) - set(flat)
    if missing or extra:
        raise CheckpointError(f"{path} does not match this run's state: missing "
                              f"{sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")
    restored = []
    for name, like in flat.items():
        value = stored[name]
        want = jax.random.key_data(like) if _is_key(like) else like
        if value.shape != want.shape or value.dtype != want.dtype:
            raise CheckpointError(
                f"{path}: {name} has shape {value.shape} {value.dtype}, this run needs "
                f"{want.shape} {want.dtype}")
        value = _place(value, want)
        if _is_key(like):
            value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(like))
        restored.append(value)
    treedef = jax.tree_util.tree_structure(template)
    return jax.tree_util.tree_unflatten(treedef, restored), contents["meta"]


def _place(value: np.ndarray, like: Any) -> jax.Array:
    """`value` laid out like the template leaf `like`: with its sharding where it has one
    (every device of every process gets its own part of the whole array), else on the
    default device."""
    sharding = getattr(like, "sharding", None)
    if sharding is None:
        return jax.numpy.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

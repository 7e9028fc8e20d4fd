"""Which official nuScenes scene names (and so which split) the generated scenes take.

The devkit decides a scene's split from its name alone (``nuscenes.utils.splits``), so the
generator borrows real names: ``v1.0-mini`` has 8 mini_train + 2 mini_val names,
``v1.0-trainval`` 700 train + 150 val, ``v1.0-test`` 150 test names. About 20 % of the
scenes (at least one) take validation names, so ``DetectionEval(eval_set='val')`` (or
``mini_val``) always has something to score.
"""
from __future__ import annotations

import numpy as np
from nuscenes.utils import splits

__all__ = ["SPLIT_NAMES", "scene_names"]

# (train-like split, validation-like split) per version; test has only one.
SPLIT_NAMES: dict[str, tuple[str, ...]] = {
    "v1.0-mini": ("mini_train", "mini_val"), "v1.0-trainval": ("train", "val"),
    "v1.0-test": ("test",)}


def scene_names(version: str, num_scenes: int, seed: int) -> list[tuple[str, str]]:
    """``(scene name, split)`` for `num_scenes` scenes, sorted by name.

    Raises ValueError when the version has fewer official names than asked for.
    """
    if version not in SPLIT_NAMES:
        raise ValueError(f"unknown nuScenes version {version!r}: use one of {list(SPLIT_NAMES)}")
    split_names = SPLIT_NAMES[version]
    pools = {name: list(getattr(splits, name)) for name in split_names}
    if len(split_names) == 1:
        wanted = {split_names[0]: num_scenes}
    else:
        train, val = split_names
        num_val = min(max(1, round(0.2 * num_scenes)), len(pools[val]))
        wanted = {train: num_scenes - num_val, val: num_val}
    available = sum(len(pool) for pool in pools.values())
    for split, count in wanted.items():
        if count > len(pools[split]):
            raise ValueError(
                f"{version} has only {available} official scene names "
                f"({' + '.join(f'{len(p)} {s}' for s, p in pools.items())} in "
                f"nuscenes.utils.splits), but {num_scenes} scenes were asked for "
                f"({count} {split}); ask for fewer scenes"
                + (" or use --version v1.0-trainval" if version == "v1.0-mini" else ""))
    rng = np.random.default_rng([seed, 7])
    chosen = []
    for split, count in wanted.items():
        picks = rng.choice(len(pools[split]), size=count, replace=False)
        chosen += [(pools[split][i], split) for i in sorted(picks)]
    return sorted(chosen)

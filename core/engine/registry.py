"""Interlace registries: children of mmengine's root registries under the scope `interlace`.

A config names a type (``dict(type='DualStreamEncoder', ...)``) and, with
``default_scope='interlace'``, mmengine finds it here. ``locations`` lists the modules
whose import registers the types, so a config never needs ``custom_imports`` for
Interlace's own components. A domain issue appends its packages to ``_LOCATIONS``.

An unknown type raises :class:`UnknownTypeError`, naming the type, the registry and
its scope, and suggesting close names from every scope.
"""
from __future__ import annotations

import difflib
import re
from typing import Any, Iterable

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

SCOPE = "interlace"

# Modules imported the first time a registry is queried under the `interlace` scope.
_LOCATIONS: dict[str, list[str]] = {
    "model": ["interlace.core.ops", "interlace.core.engine"],
    "dataset": ["interlace.core.engine"],
    "transform": ["interlace.core.engine"],
    "metric": ["interlace.core.engine"],
    "hook": ["interlace.core.engine"],
    "data sampler": ["interlace.core.engine"],
    "task util": ["interlace.core.engine"],
    "visualizer": ["interlace.core.engine"],
    "inference io": ["interlace.core.engine"],
}

_MESSAGE = re.compile(r"`?(?P<type>[\w.:]+)`? is not in the (?:(?P<scope>[\w.]+)::)?(?P<name>[\w ]+?) registry")


class UnknownTypeError(KeyError):
    """A config named a type that no registry in reach knows."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def _registry_family(registry: Registry) -> Iterable[Registry]:
    """The root of `registry` and every registry below it (all scopes)."""
    root = registry
    while root.parent is not None:
        root = root.parent
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node._children.values())


def close_names(registry: Registry, name: str, limit: int = 5) -> list[str]:
    """Registered names in any scope of `registry`'s family that look like `name`."""
    candidates: set[str] = set()
    for node in _registry_family(registry):
        node.import_from_location()
        candidates.update(node.module_dict)
    bare = name.split(".")[-1]
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(bare.lower(), list(lowered), n=limit, cutoff=0.6)
    found = [lowered[c] for c in close]
    found += sorted(c for c in candidates if bare.lower() in c.lower() and c not in found)
    return found[:limit]


def explain_unknown_type(error: BaseException) -> BaseException:
    """Turn mmengine's "X is not in the scope::name registry" KeyError into an
    :class:`UnknownTypeError` with suggestions; return any other error unchanged."""
    if isinstance(error, UnknownTypeError):
        return error
    match = _MESSAGE.search(str(error))
    if not isinstance(error, KeyError) or match is None:
        return error
    type_name, scope, reg_name = match.group("type", "scope", "name")
    registry = REGISTRIES.get(reg_name.strip())
    suggestions = close_names(registry, type_name) if registry is not None else []
    hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else " No registered name is close."
    scope_text = f"{scope}::{reg_name}" if scope else reg_name
    message = (f"Unknown type '{type_name}' in the {scope_text} registry (default scope "
               f"'{SCOPE}').{hint} Types are registered by importing their module; "
               f"check the spelling or add the module to `custom_imports`.")
    return UnknownTypeError(message)


class InterlaceRegistry(Registry):
    """An mmengine :class:`Registry` whose ``build`` explains unknown types."""

    def build(self, cfg: dict, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().build(cfg, *args, **kwargs)
        except KeyError as error:
            explained = explain_unknown_type(error)
            if explained is error:
                raise
            raise explained from None


def _child(name: str, parent: Registry) -> InterlaceRegistry:
    return InterlaceRegistry(name, parent=parent, scope=SCOPE, locations=_LOCATIONS[name])


MODELS = _child("model", MMENGINE_MODELS)
DATASETS = _child("dataset", MMENGINE_DATASETS)
TRANSFORMS = _child("transform", MMENGINE_TRANSFORMS)
METRICS = _child("metric", MMENGINE_METRICS)
HOOKS = _child("hook", MMENGINE_HOOKS)
DATA_SAMPLERS = _child("data sampler", MMENGINE_DATA_SAMPLERS)
TASK_UTILS = _child("task util", MMENGINE_TASK_UTILS)
VISUALIZERS = _child("visualizer", MMENGINE_VISUALIZERS)
# Readers and writers that a domain plugs into the batch-inference engine. mmengine has
# no root registry for them, so this one has no parent.
INFERENCE_IO = InterlaceRegistry("inference io", scope=SCOPE, locations=_LOCATIONS["inference io"])

REGISTRIES: dict[str, Registry] = {
    r.name: r for r in (MODELS, DATASETS, TRANSFORMS, METRICS, HOOKS, DATA_SAMPLERS,
                        TASK_UTILS, VISUALIZERS, INFERENCE_IO)
}


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every module that registers Interlace types and, optionally, make
    `interlace` the default scope (as ``mmdet3d.utils.register_all_modules`` does)."""
    import importlib

    from mmengine.registry import DefaultScope

    for module in sorted({m for mods in _LOCATIONS.values() for m in mods}):
        importlib.import_module(module)
    if init_default_scope:
        current = DefaultScope.get_current_instance()
        if current is None or current.scope_name != SCOPE:
            DefaultScope.get_instance(f"interlace-{id(object())}", scope_name=SCOPE)

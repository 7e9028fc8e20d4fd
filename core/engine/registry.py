"""Interlace registries: children of mmengine's root registries under the scope `interlace`.

A config names a type (``dict(type='DualStreamEncoder', ...)``) and, with
``default_scope='interlace'``, mmengine finds it here. ``locations`` lists the modules
whose import registers the types, so a config never needs ``custom_imports`` for
Interlace's own components. Core lists only core modules; the domains add theirs with
:func:`add_locations` from ``interlace.registry`` (outside core, which never names a
domain).

An unknown type raises :class:`UnknownTypeError`, naming the type, the registry and
its scope, and suggesting close names from every scope.
"""
from __future__ import annotations

import difflib
import re
from typing import Any, Iterable

import mmengine.registry as mmengine_registry
from mmengine.registry import Registry

SCOPE = "interlace"

# Modules imported the first time a registry is queried under the `interlace` scope.
_LOCATIONS: dict[str, list[str]] = {
    "model": ["interlace.core.ops", "interlace.core.interaction", "interlace.core.alignment",
              "interlace.core.temporal", "interlace.core.necks", "interlace.core.engine"],
    "dataset": ["interlace.core.engine"],
    "transform": ["interlace.core.engine"],
    "metric": ["interlace.core.engine"],
    "hook": ["interlace.core.engine"],
    "data sampler": ["interlace.core.engine"],
    "task util": ["interlace.core.interaction", "interlace.core.engine"],
    "visualizer": ["interlace.core.engine"],
    "inference io": ["interlace.core.engine"],
    "loop": ["interlace.core.engine"],
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


def _child(root: str) -> InterlaceRegistry:
    parent = getattr(mmengine_registry, root)
    return InterlaceRegistry(parent.name, parent=parent, scope=SCOPE,
                             locations=_LOCATIONS.get(parent.name, []))


MODELS = _child("MODELS")
DATASETS = _child("DATASETS")
TRANSFORMS = _child("TRANSFORMS")
METRICS = _child("METRICS")
HOOKS = _child("HOOKS")
DATA_SAMPLERS = _child("DATA_SAMPLERS")
TASK_UTILS = _child("TASK_UTILS")
VISUALIZERS = _child("VISUALIZERS")
# The other mmengine roots get an `interlace` child too (as mmdet3d does), so building an
# optimizer or scheduler under the `interlace` scope finds mmengine's types without a
# "failed to search registry" warning.
RUNNERS = _child("RUNNERS")
RUNNER_CONSTRUCTORS = _child("RUNNER_CONSTRUCTORS")
LOOPS = _child("LOOPS")
OPTIMIZERS = _child("OPTIMIZERS")
OPTIM_WRAPPERS = _child("OPTIM_WRAPPERS")
OPTIM_WRAPPER_CONSTRUCTORS = _child("OPTIM_WRAPPER_CONSTRUCTORS")
PARAM_SCHEDULERS = _child("PARAM_SCHEDULERS")
EVALUATOR = _child("EVALUATOR")
MODEL_WRAPPERS = _child("MODEL_WRAPPERS")
WEIGHT_INITIALIZERS = _child("WEIGHT_INITIALIZERS")
VISBACKENDS = _child("VISBACKENDS")
LOG_PROCESSORS = _child("LOG_PROCESSORS")
FUNCTIONS = _child("FUNCTIONS")
INFERENCERS = _child("INFERENCERS")
# Readers and writers that a domain plugs into the batch-inference engine. mmengine has
# no root registry for them, so this one has no parent.
INFERENCE_IO = InterlaceRegistry("inference io", scope=SCOPE, locations=_LOCATIONS["inference io"])

REGISTRIES: dict[str, Registry] = {
    r.name: r for r in (MODELS, DATASETS, TRANSFORMS, METRICS, HOOKS, DATA_SAMPLERS,
                        TASK_UTILS, VISUALIZERS, RUNNERS, RUNNER_CONSTRUCTORS, LOOPS,
                        OPTIMIZERS, OPTIM_WRAPPERS, OPTIM_WRAPPER_CONSTRUCTORS,
                        PARAM_SCHEDULERS, EVALUATOR, MODEL_WRAPPERS, WEIGHT_INITIALIZERS,
                        VISBACKENDS, LOG_PROCESSORS, FUNCTIONS, INFERENCERS, INFERENCE_IO)
}


def add_locations(registry_name: str, modules: list[str]) -> None:
    """Add modules (e.g. a domain's package) whose import registers types in the registry
    named `registry_name` ("model", "dataset", ...). Safe to call after the registry was
    first queried: it is marked for re-import."""
    registry = REGISTRIES[registry_name]
    for module in modules:
        if module not in registry._locations:
            registry._locations.append(module)
            registry._imported = False


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every module that registers Interlace types and, optionally, make
    `interlace` the default scope (as ``mmdet3d.utils.register_all_modules`` does)."""
    import importlib

    from mmengine.registry import DefaultScope

    import interlace.registry  # noqa: F401  adds the domains' locations

    for module in sorted({m for r in REGISTRIES.values() for m in r._locations}):
        importlib.import_module(module)
    if init_default_scope:
        current = DefaultScope.get_current_instance()
        if current is None or current.scope_name != SCOPE:
            DefaultScope.get_instance(f"interlace-{id(object())}", scope_name=SCOPE)

"""Registries are children of mmengine's under the scope `interlace`; a config names a type."""
import pytest
from mmengine.registry import DefaultScope
from mmengine.registry import MODELS as MMENGINE_MODELS

from interlace.core.engine import registry
from interlace.core.engine.registry import MODELS, UnknownTypeError, explain_unknown_type

ISSUE_REGISTRIES = ("MODELS", "DATASETS", "TRANSFORMS", "METRICS", "HOOKS", "DATA_SAMPLERS",
                    "TASK_UTILS", "VISUALIZERS")


@pytest.mark.parametrize("name", ISSUE_REGISTRIES)
def test_each_registry_is_a_child_of_mmengine_with_scope_interlace(name):
    import mmengine.registry as root
    ours = getattr(registry, name)
    assert ours.scope == "interlace"
    assert ours.parent is getattr(root, name)
    assert root.__dict__[name]._children["interlace"] is ours
    assert ours._locations, f"{name} has no import locations"


def test_config_type_builds_through_mmengine_root_with_default_scope():
    registry.register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope("interlace"):
        module = MMENGINE_MODELS.build(dict(type="MultiScaleSampledAttention", embed_dims=32,
                                            num_heads=4, num_levels=1, num_points=2))
    assert type(module).__name__ == "MultiScaleSampledAttention"


def test_locations_import_registering_modules_on_first_lookup():
    assert "Voxelization" in MODELS or MODELS.get("Voxelization") is not None


def test_unknown_type_names_type_scope_and_suggests_close_names():
    with pytest.raises(UnknownTypeError) as info:
        MODELS.build(dict(type="LocalWindowAtention"))
    message = str(info.value)
    assert "LocalWindowAtention" in message and "interlace::model" in message
    assert "Did you mean: LocalWindowAttention" in message


def test_unknown_type_with_nothing_close_says_so():
    with pytest.raises(UnknownTypeError, match="No registered name is close"):
        MODELS.build(dict(type="Zzzzqqqq"))


def test_explain_leaves_other_key_errors_alone():
    error = KeyError("missing key 'foo'")
    assert explain_unknown_type(error) is error


def test_explain_rewrites_mmengine_message_raised_inside_a_parent_build():
    nested = KeyError("class `Outer` in x.py: 'SampledAtention is not in the "
                      "interlace::model registry. Please check ...'")
    explained = explain_unknown_type(nested)
    assert isinstance(explained, UnknownTypeError)
    assert "Did you mean" in str(explained) and "MultiScaleSampledAttention" in str(explained)

"""Domain types resolve by name under the `interlace` scope, as a config builds them."""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import DefaultScope


def test_medical_types_build_from_config_names_through_mmengine_roots():
    with DefaultScope.overwrite_default_scope("interlace"):
        transform = MMENGINE_TRANSFORMS.build(dict(type="CxrNormalized"))
        with MMENGINE_DATASETS.switch_scope_and_registry(None) as registry:
            dataset_cls = registry.get("MimicCxrDataset")
    assert type(transform).__name__ == "CxrNormalized"
    assert dataset_cls is not None and dataset_cls.__name__ == "MimicCxrDataset"

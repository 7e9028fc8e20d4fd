"""`interlace.registry`: the name mmengine imports for the default scope `interlace`
(as it imports `mmdet3d.registry`). The registries themselves live in
`interlace.core.engine.registry`."""
from interlace.core.engine.registry import (DATA_SAMPLERS, DATASETS, HOOKS, INFERENCE_IO,  # noqa: F401
                                            METRICS, MODELS, TASK_UTILS, TRANSFORMS,
                                            VISUALIZERS, register_all_modules)

"""`interlace.registry`: the name mmengine imports for the default scope `interlace`
(as it imports `mmdet3d.registry`). The registries themselves live in
`interlace.core.engine.registry`."""
from interlace.core.engine.registry import *  # noqa: F401,F403
from interlace.core.engine.registry import register_all_modules  # noqa: F401

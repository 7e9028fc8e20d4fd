"""`interlace.registry`: the name mmengine imports for the default scope `interlace`
(as it imports `mmdet3d.registry`). The registries themselves live in
`interlace.core.engine.registry`."""
from interlace.core.engine.registry import *  # noqa: F401,F403
from interlace.core.engine.registry import add_locations, register_all_modules  # noqa: F401

# Where each domain registers its types (core never names a domain). mmengine imports
# this module for the default scope `interlace`, so configs find them by name.
DOMAIN_LOCATIONS = {
    "dataset": ["interlace.domains.medical.data", "interlace.domains.driving.data",
                "interlace.domains.remote_sensing.data"],
    "transform": ["interlace.domains.medical.data", "interlace.domains.driving.data",
                  "interlace.domains.remote_sensing.data"],
    "data sampler": ["interlace.domains.driving.data", "interlace.domains.remote_sensing.data"],
    "model": ["interlace.domains.medical.models", "interlace.domains.driving.models",
              "interlace.domains.remote_sensing.models"],
    "hook": ["interlace.domains.medical.models", "interlace.domains.remote_sensing.models"],
    "function": ["interlace.domains.medical.models", "interlace.domains.driving.data",
                 "interlace.domains.remote_sensing.data"],
    "task util": ["interlace.domains.driving.models"],
    "metric": ["interlace.domains.medical.evaluation", "interlace.domains.driving.evaluation",
               "interlace.domains.remote_sensing.evaluation"],
    "inference io": ["interlace.domains.medical.evaluation",
                     "interlace.domains.driving.evaluation",
                     "interlace.domains.remote_sensing.evaluation"],
}
for _registry_name, _modules in DOMAIN_LOCATIONS.items():
    add_locations(_registry_name, _modules)

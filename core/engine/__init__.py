"""mmengine glue: registries, tools support, batch inference, checkpoints."""
from . import batch_inference  # noqa: F401,E402  registers the generic readers/writers in INFERENCE_IO
from . import checkpoint  # noqa: F401,E402  installs the weights_only checkpoint loader into mmengine
from . import checkpoint_files  # noqa: F401,E402  makes mmengine's checkpoint saves atomic
from . import loops  # noqa: F401,E402  registers ResumableEpochBasedTrainLoop and RandomStateHook
from . import hooks  # noqa: F401,E402  registers the shared training hooks
from . import pretrained_init  # noqa: F401,E402  registers `Pretrained` (with key maps) in the interlace scope
from . import weight_conversion  # noqa: F401,E402  registers the published-layout key maps for `Pretrained`

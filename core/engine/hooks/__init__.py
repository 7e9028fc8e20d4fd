"""Training hooks shared by every domain, registered under the scope ``interlace``.

One module per hook; importing this package registers all of them in ``HOOKS``.
"""
from . import time_budget  # noqa: F401,E402
from . import preemption  # noqa: F401,E402
from . import non_finite  # noqa: F401,E402

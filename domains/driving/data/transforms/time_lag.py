"""Run the sweeps' time backwards: a test-time probe of whether a detector reads motion
from the time-lag column (the driving check's ``lag_reversal`` step).

After :class:`LoadPointsFromMultiSweeps` every point carries in column 4 the time lag of
its sweep, in seconds before the key frame (0 for the key frame, about 0.05 s per older
sweep). A vehicle moving at velocity ``v`` leaves a trail: its points of lag ``t`` lie at
``x - v t``. A detector that uses the lag reads ``v`` from how the points move as the lag
falls.

:class:`ReverseTimeLag` maps every point's lag ``t`` to ``W - t``, where ``W`` is the
window (by default the largest lag in the cloud, i.e. the oldest merged sweep's). So:

* the key frame's points get lag ``W`` and the oldest sweep's points lag 0; the sweeps in
  between swap places symmetrically (with evenly spaced sweeps, as nuScenes' are, the set
  of lag values is exactly the one the model was trained on, only the order in time is
  reversed, so nothing is out of distribution);
* coordinates, intensity and the number of points do not change;
* the trail now reads as an object at ``x - v W`` moving at ``-v``: a model that reads
  motion from the lag should turn its velocity around; one that ignores the lag predicts
  the same velocity as before.

Static objects' points overlap in every sweep (the sweeps are ego-motion compensated), so
reversing changes nothing for them.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from interlace.core.engine.registry import TRANSFORMS

from .loading import TIME_LAG_COLUMN

__all__ = ["ReverseTimeLag", "reverse_time_lag"]

_TOLERANCE = 1e-6  # s: float32 lags of the window's own sweep may exceed it by rounding


def reverse_time_lag(points: np.ndarray, window: Optional[float] = None) -> np.ndarray:
    """A copy of `points` (P, C) with column 4 (the time lag, s) mapped ``t -> W - t``.

    Args:
        points: (P, C) with C > 4, the time lag in column 4.
        window: ``W`` in seconds; None takes the largest lag in the cloud (0 for a cloud
            without sweeps, which is then returned unchanged).

    Raises:
        ValueError: the cloud has no time-lag column, or a lag lies outside [0, window]
            (a lag above a fixed window would turn negative: a wrong window).
    """
    if points.ndim != 2 or points.shape[1] <= TIME_LAG_COLUMN:
        raise ValueError(f"ReverseTimeLag: points of shape {points.shape} have no time-lag "
                         f"column (index {TIME_LAG_COLUMN}); load the sweeps first")
    lags = points[:, TIME_LAG_COLUMN]
    top = float(lags.max()) if len(lags) else 0.0
    span = top if window is None else float(window)
    if len(lags) and (float(lags.min()) < -_TOLERANCE or top > span + _TOLERANCE):
        raise ValueError(f"ReverseTimeLag: lags span [{float(lags.min()):.4g}, {top:.4g}] s, "
                         f"outside the window [0, {span:.4g}] s")
    out = points.copy()
    out[:, TIME_LAG_COLUMN] = np.clip(span - lags, 0.0, None)  # clip: rounding, never < 0
    return out


@TRANSFORMS.register_module()
class ReverseTimeLag:
    """Reverse the time order of the merged sweeps: lag ``t -> W - t`` (see the module
    docstring for why this runs the motion cue backwards).

    Put it right after ``LoadPointsFromMultiSweeps`` in a test pipeline. It is a probe,
    not an augmentation: a model trained with it would learn the opposite velocities.

    Args:
        window: ``W`` in seconds; None (default) takes each cloud's largest lag, so a
            sample with fewer sweeps is reversed over its own span.
    """

    def __init__(self, window: Optional[float] = None) -> None:
        if window is not None and window < 0:
            raise ValueError(f"ReverseTimeLag: window must be >= 0 s, got {window}")
        self.window = window

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """``points`` (P, C) -> (P, C), column 4 reversed; nothing else changes."""
        results["points"] = reverse_time_lag(np.asarray(results["points"]), self.window)
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(window={self.window})"

"""The error every chest X-ray reader raises for a file it cannot turn into an image."""
from __future__ import annotations

__all__ = ["ImageLoadError"]


class ImageLoadError(OSError):
    """An image file that cannot be decoded; the message names the file and why."""

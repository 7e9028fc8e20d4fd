"""Interlace: a dual-stream interaction core and its driving, remote-sensing and medical
domains. `interlace.core` is the shared core, `interlace.domains` the domain packages."""

__version__ = "0.1.0"

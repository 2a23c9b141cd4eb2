"""The base of every error a user can cause (bad config, bad input file, missing extra, refused
download). The CLI catches :class:`PerturbenchError` once and prints its message — one line
naming the file (or config entry) and the field — then exits 1; anything else is a bug and keeps
its traceback. Imports nothing, so every module can raise these.
"""

from __future__ import annotations


class PerturbenchError(Exception):
    """A user error: the message names the file (or run / config entry) and the field."""


class ConfigError(PerturbenchError, ValueError):
    """A bad configuration value: unknown model, source, preset, feature set or hyper-parameter."""


class MissingExtraError(PerturbenchError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


__all__ = ["ConfigError", "MissingExtraError", "PerturbenchError"]

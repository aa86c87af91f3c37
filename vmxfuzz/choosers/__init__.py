"""Strategies that decide a run's nondeterminism, one small module each.

:class:`Chooser` is the interface (:mod:`.base`); :class:`ReplayChooser` replays a
scenario; :class:`RecordingChooser` wraps any chooser and writes its decisions down
as a scenario that replays to the same run.
"""

from .base import Chooser, default_choice
from .recording import RecordingChooser
from .replay import ReplayChooser

__all__ = ["Chooser", "RecordingChooser", "ReplayChooser", "default_choice"]

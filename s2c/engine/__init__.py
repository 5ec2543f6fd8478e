"""Runner-side pieces: hooks and the crash-safe runner."""
from .hooks import (
    EmptySegmentsHook,
    NonFiniteLossError,
    NonFiniteLossHook,
    WeightsOnlyCheckpointHook,
    from_plain,
    to_plain,
)
from .runner import CheckpointSafeRunner

__all__ = ['CheckpointSafeRunner', 'EmptySegmentsHook', 'NonFiniteLossError', 'NonFiniteLossHook',
           'WeightsOnlyCheckpointHook', 'from_plain', 'to_plain']

"""Runner hooks."""
from .checkpoint_hook import WeightsOnlyCheckpointHook, from_plain, to_plain

__all__ = ['WeightsOnlyCheckpointHook', 'from_plain', 'to_plain']

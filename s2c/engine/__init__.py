"""Runner-side pieces (hooks)."""
from .hooks import WeightsOnlyCheckpointHook, from_plain, to_plain

__all__ = ['WeightsOnlyCheckpointHook', 'from_plain', 'to_plain']

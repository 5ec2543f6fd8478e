"""Runner hooks."""
from .checkpoint_hook import WeightsOnlyCheckpointHook, from_plain, to_plain
from .empty_segments_hook import EmptySegmentsHook
from .non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook

__all__ = ['EmptySegmentsHook', 'NonFiniteLossError', 'NonFiniteLossHook',
           'WeightsOnlyCheckpointHook', 'from_plain', 'to_plain']

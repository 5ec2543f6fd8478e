"""Runner hooks."""
from .checkpoint_hook import WeightsOnlyCheckpointHook, from_plain, to_plain
from .non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook

__all__ = ['NonFiniteLossError', 'NonFiniteLossHook', 'WeightsOnlyCheckpointHook', 'from_plain',
           'to_plain']

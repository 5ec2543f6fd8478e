"""Runner-side pieces (hooks)."""
from .hooks import (
                    NonFiniteLossError,
                    NonFiniteLossHook,
                    WeightsOnlyCheckpointHook,
                    from_plain,
                    to_plain,
)

__all__ = ['NonFiniteLossError', 'NonFiniteLossHook', 'WeightsOnlyCheckpointHook', 'from_plain',
           'to_plain']

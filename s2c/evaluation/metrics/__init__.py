"""MMEngine metrics (``BaseMetric``) registered in ``s2c.registry.METRICS``."""
from .cam_metric import CAMThresholdMetric

__all__ = ['CAMThresholdMetric']

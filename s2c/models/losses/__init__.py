"""Losses of the CAM classifier (keys start with ``loss_``): BCE, SSC and CPM's cross-entropy."""
from .cpm_loss import CPMLoss
from .multilabel import MultiLabelBCELoss
from .ssc import SSCLoss, segment_prototypes

__all__ = ['CPMLoss', 'MultiLabelBCELoss', 'SSCLoss', 'segment_prototypes']

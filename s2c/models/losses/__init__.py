"""Losses of the CAM classifier (keys start with ``loss_``): BCE, SSC and CPM."""
from .cpm import CPM, compose_cpm_labels, stability_scores
from .multilabel import MultiLabelBCELoss
from .ssc import SSCLoss, segment_prototypes

__all__ = ['CPM', 'compose_cpm_labels', 'stability_scores', 'MultiLabelBCELoss', 'SSCLoss',
           'segment_prototypes']

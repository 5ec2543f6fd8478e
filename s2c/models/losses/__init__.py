"""Losses of the CAM classifier (keys start with ``loss_``)."""
from .multilabel import MultiLabelBCELoss

__all__ = ['MultiLabelBCELoss']

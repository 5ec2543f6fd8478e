"""Visualisation of CAMs, pseudo-labels and ground truth."""
from .cam_grid import colorize, heat_overlay, render_grid

__all__ = ['colorize', 'heat_overlay', 'render_grid']

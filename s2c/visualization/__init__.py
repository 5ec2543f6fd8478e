"""Visualisation of CAMs, pseudo-labels and ground truth."""
from .cam_grid import colorize, heat_overlay, render_grid, stack_rows

__all__ = ['colorize', 'heat_overlay', 'render_grid', 'stack_rows']

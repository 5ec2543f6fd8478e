"""s2c: From SAM to CAMs (CVPR 2024) as a complete WSSS pipeline."""

__version__ = '0.1.0'

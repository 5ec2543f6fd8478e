"""Models: backbones, CAM classifiers, CPM and losses (registered in ``s2c.registry.MODELS``)."""
from .backbones import *  # noqa: F401,F403
from .classifiers import *  # noqa: F401,F403
from .cpm import CPM  # noqa: F401
from .data_preprocessor import ClsDataPreprocessor  # noqa: F401
from .losses import *  # noqa: F401,F403

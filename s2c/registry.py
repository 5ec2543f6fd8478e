"""Registries of s2c: children of MMEngine's roots, plus our own roots.

Every child registry has scope ``'s2c'`` and ``locations`` so that building a
config with ``default_scope='s2c'`` imports the modules that register into it.
Three registries are roots of their own because MMEngine has no equivalent:

- ``PROMPT_BACKENDS``: SAM decoder variants (SAM, HQ-SAM, RobustSAM, PerSAM,
  PerSAM-F) that turn prompts into masks, used by CPM and SAM refinement.
- ``SE_PROVIDERS``: "segment everything" providers that turn an image into an
  SE map (SAM AMG, the library's generator, Felzenszwalb, SLIC).
- ``LABEL_METHODS``: pseudo-label methods (CAMs -> label map: threshold, dense
  CRF, SE-map merging, SAM refinement).
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNER_CONSTRUCTORS as MMENGINE_RUNNER_CONSTRUCTORS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

_SCOPE = 's2c'

RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS, scope=_SCOPE, locations=['s2c.engine'])
RUNNER_CONSTRUCTORS = Registry('runner constructor', parent=MMENGINE_RUNNER_CONSTRUCTORS,
                               scope=_SCOPE, locations=['s2c.engine'])
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, scope=_SCOPE, locations=['s2c.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope=_SCOPE, locations=['s2c.engine'])
LOG_PROCESSORS = Registry('log processor', parent=MMENGINE_LOG_PROCESSORS, scope=_SCOPE,
                          locations=['s2c.engine'])
OPTIMIZERS = Registry('optimizer', parent=MMENGINE_OPTIMIZERS, scope=_SCOPE,
                      locations=['s2c.engine'])
OPTIM_WRAPPERS = Registry('optim wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope=_SCOPE,
                          locations=['s2c.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor',
                                      parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope=_SCOPE,
                                      locations=['s2c.engine'])
PARAM_SCHEDULERS = Registry('parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS,
                            scope=_SCOPE, locations=['s2c.engine'])

DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope=_SCOPE, locations=['s2c.datasets'])
DATA_SAMPLERS = Registry('data sampler', parent=MMENGINE_DATA_SAMPLERS, scope=_SCOPE,
                         locations=['s2c.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope=_SCOPE,
                      locations=['s2c.datasets.transforms'])
FUNCTIONS = Registry('function', parent=MMENGINE_FUNCTIONS, scope=_SCOPE,
                     locations=['s2c.datasets'])

MODELS = Registry('model', parent=MMENGINE_MODELS, scope=_SCOPE, locations=['s2c.models'])
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope=_SCOPE,
                          locations=['s2c.models'])
WEIGHT_INITIALIZERS = Registry('weight initializer', parent=MMENGINE_WEIGHT_INITIALIZERS,
                               scope=_SCOPE, locations=['s2c.models'])
TASK_UTILS = Registry('task util', parent=MMENGINE_TASK_UTILS, scope=_SCOPE,
                      locations=['s2c.models'])

METRICS = Registry('metric', parent=MMENGINE_METRICS, scope=_SCOPE, locations=['s2c.evaluation'])
EVALUATOR = Registry('evaluator', parent=MMENGINE_EVALUATOR, scope=_SCOPE,
                     locations=['s2c.evaluation'])

VISUALIZERS = Registry('visualizer', parent=MMENGINE_VISUALIZERS, scope=_SCOPE,
                       locations=['s2c.engine'])
VISBACKENDS = Registry('vis_backend', parent=MMENGINE_VISBACKENDS, scope=_SCOPE,
                       locations=['s2c.engine'])

# Roots of our own (no MMEngine equivalent).
PROMPT_BACKENDS = Registry('prompt backend', scope=_SCOPE, locations=['s2c.sam.backends'])
SE_PROVIDERS = Registry('se provider', scope=_SCOPE, locations=['s2c.sam.se_providers'])
LABEL_METHODS = Registry('pseudo-label method', scope=_SCOPE, locations=['s2c.pseudo_labels'])

"""nnexp.nn.fast: the speed machinery beside the reference network.

Each piece is a variant of a reference piece of nnexp.nn, selected by the
config and tested against it; the reference modules never import this
package.  A fast model is the reference model a config describes with each
layer swapped for its variant (model.py, ``fast_twin``); options only this
engine has are declared here (``FAST_LAYER_SPECS``):

    layers.py, conv.py, pooling.py, batchnorm.py   the layers, with buffers reused,
        fewer passes, activations kept in their memory layout (layout.py) and a
        Winograd F(2x2, 3x3) convolution (winograd.py; ``algorithm`` of a conv2d)
    model.py        FastSequential: flat parameter buffers, fused evaluation
    optim.py        the update rules over flat, cache-sized blocks
    threads.py      a layer's chunks on several cores
    forked.py       evaluation batches in forked processes
    data_parallel.py  each training batch in shards on several processes
                    (``train.data_parallel``)

``model.engine: fast`` (the default) trains with these; ``model.engine:
reference`` with the plain layers of nnexp.nn.
"""

from .data_parallel import DataParallel
from .forked import map_batches
from .model import FAST_LAYER_SPECS, FastSequential, build_fast_model, fast_twin
from .optim import FAST_OPTIMIZERS

__all__ = ["DataParallel", "FAST_LAYER_SPECS", "FAST_OPTIMIZERS", "FastSequential", "build_fast_model",
           "fast_twin", "map_batches"]

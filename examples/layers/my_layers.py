"""Layers of one's own for nnexp, written the textbook way: a forward that
remembers what the backward needs, a backward that applies the chain rule.

Name them in a config by file and class (the path relative to the config)::

    model:
      layers:
        - {type: dense, units: 128}
        - {type: my_layers.py:Swish, beta: 1.0}
        - {type: my_layers.py:LayerNorm}
        - {type: dense, units: 10}
"""

import numpy as np

from nnexp.nn import Layer, Stack


class Swish(Layer):
    """y = x * sigmoid(beta * x)   (Ramachandran et al., 2017)

    With s = sigmoid(beta * x):   dy/dx = s + beta * x * s * (1 - s)
    """

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x, training=True):
        self.x = x
        self.s = 1.0 / (1.0 + np.exp(-self.beta * x))
        return x * self.s

    def backward(self, dout):
        s = self.s
        return dout * (s + self.beta * self.x * s * (1.0 - s))


class LayerNorm(Layer):
    """Each sample normalised over its own features, then scaled and shifted
    (Ba et al., 2016).  With D features per sample:

        mu = mean(x),  var = mean((x - mu)^2),  xhat = (x - mu) / sqrt(var + eps)
        y = gamma * xhat + beta

    Backward, with g = dL/dy:
        dL/dgamma = sum_n g * xhat,   dL/dbeta = sum_n g
        dL/dx = (D * gh - sum(gh) - xhat * sum(gh * xhat)) / (D * sqrt(var + eps)),   gh = g * gamma
    """

    def __init__(self, input_shape, dtype, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.params = {"gamma": np.ones(input_shape, dtype), "beta": np.zeros(input_shape, dtype)}
        self.grads = {"gamma": np.zeros(input_shape, dtype), "beta": np.zeros(input_shape, dtype)}

    def forward(self, x, training=True):
        flat = x.reshape(len(x), -1)
        mu = flat.mean(axis=1, keepdims=True)
        var = flat.var(axis=1, keepdims=True)
        self.inv_std = 1.0 / np.sqrt(var + self.eps)
        self.xhat = ((flat - mu) * self.inv_std).reshape(x.shape)
        return self.params["gamma"] * self.xhat + self.params["beta"]

    def backward(self, dout):
        self.grads["gamma"][...] = (dout * self.xhat).sum(axis=0)
        self.grads["beta"][...] = dout.sum(axis=0)
        n = len(dout)
        gh = (dout * self.params["gamma"]).reshape(n, -1)
        xhat = self.xhat.reshape(n, -1)
        D = gh.shape[1]
        dx = (D * gh - gh.sum(axis=1, keepdims=True) - xhat * (gh * xhat).sum(axis=1, keepdims=True))
        return (dx * self.inv_std / D).reshape(dout.shape)


class Residual(Layer):
    """y = x + f(x), f being the layers listed under ``body`` (they must keep the shape).

    Backward: dL/dx = g + f'(x)^T g, the gradient of the skip plus that of the body.
    """

    def __init__(self, body: Stack):
        super().__init__()
        self.body = body
        self.params, self.grads, self.buffers = body.params, body.grads, body.buffers

    def forward(self, x, training=True):
        return x + self.body.forward(x, training)

    def backward(self, dout):
        return dout + self.body.backward(dout)

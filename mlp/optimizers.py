"""Optimizers over one flat parameter vector, separate from the network.

Every layer's W and b are views into one flat ``params`` array and the gradients into
one flat ``grads`` array (see network.py), so each optimizer updates all layers in a
handful of whole-array numpy calls. ``step(params, grads, lr)`` updates ``params`` in
place (it may overwrite ``grads``) and returns ``(u, s)`` with the step taken equal to
``-s * u``; the trainer reads the update norms for telemetry from ``u``.

SGD sets ``folds_lr``: the trainer then hands it gradients already multiplied by the
learning rate (folded into the output error), which saves one pass per step.
"""
import math

import numpy as np


class SGD:
    """SGD with optional (Nesterov) momentum and L2 weight decay."""

    folds_lr = True

    def __init__(self, p, n, dtype):
        self.mu, self.nesterov, self.wd = p["momentum"], p["nesterov"], p["weight_decay"]
        self.velocity = np.zeros(n, dtype) if self.mu > 0 else None
        self.tmp = np.zeros(n, dtype) if self.nesterov else None

    def state(self):
        return {} if self.velocity is None else {"velocity": self.velocity}

    def step(self, params, g, lr):
        """Update with ``g`` = lr * gradient (lr folded in by the trainer)."""
        if lr == 0.0:
            return g, 0.0
        if self.wd:
            g += (lr * self.wd) * params
        if self.velocity is None:
            params -= g
            return g, 1.0
        v = self.velocity
        v *= self.mu
        v -= g
        if not self.nesterov:
            params += v
            return v, -1.0
        # Nesterov (Sutskever form): step = mu * v_new - lr * g.
        np.multiply(v, self.mu, out=self.tmp)
        self.tmp -= g
        params += self.tmp
        return self.tmp, -1.0


class Adam:
    """Adam (Kingma & Ba) with L2 decay, or AdamW's decoupled decay when ``decoupled``.

    The moments are stored unnormalised, m' = m / (1 − β₁) and v' = v / (1 − β₂), so each
    updates in place without a temporary (m' ← β₁m' + g); the constants and the bias
    corrections fold into two scalars. Both moments sit in one (2, n) array, so one
    broadcast multiply decays them together. Nine numpy calls per step in all.
    """

    folds_lr = False
    decoupled = False

    def __init__(self, p, n, dtype):
        self.b1, self.b2, self.eps, self.wd = p["beta1"], p["beta2"], p["eps"], p["weight_decay"]
        self.moments = np.zeros((2, n), dtype)
        self.m, self.v = self.moments
        self.betas = np.array([[self.b1], [self.b2]], dtype)
        self.t = np.zeros((), np.int64)
        self.tmp, self.tmp2 = np.empty(n, dtype), None

    def state(self):
        return {"m": self.m, "v": self.v, "t": self.t}

    def step(self, params, g, lr):
        if self.wd and not self.decoupled:
            g += self.wd * params
        self.t += 1
        t, m, v, tmp = int(self.t), self.m, self.v, self.tmp
        self.moments *= self.betas  # m' ← β₁m', v' ← β₂v' in one call
        m += g
        np.multiply(g, g, out=tmp)
        v += tmp
        # lr·m̂/(√v̂ + ε) = k·m'/(√v' + ε/c) with c = √((1−β₂)/bc₂), k = lr(1−β₁)/(bc₁·c).
        # Python floats, not numpy float64 scalars: a float64 scalar would promote a float32
        # array's in-place operation to a cast loop about 5x slower (NEP 50).
        c = math.sqrt((1.0 - self.b2) / (1.0 - self.b2 ** t))
        k = float(lr) * (1.0 - self.b1) / ((1.0 - self.b1 ** t) * c)
        np.sqrt(v, out=tmp)
        tmp += self.eps / c
        np.divide(m, tmp, out=tmp)
        tmp *= k
        if self.wd and self.decoupled:
            if self.tmp2 is None:
                self.tmp2 = np.empty_like(tmp)
            np.multiply(params, lr * self.wd, out=self.tmp2)
            tmp += self.tmp2
        params -= tmp
        return tmp, 1.0


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter)."""

    decoupled = True


class RMSprop:
    """RMSprop with optional momentum and L2 decay (PyTorch's formulation)."""

    folds_lr = False

    def __init__(self, p, n, dtype):
        self.rho, self.eps, self.mu, self.wd = p["rho"], p["eps"], p["momentum"], p["weight_decay"]
        self.sq, self.tmp = np.zeros(n, dtype), np.empty(n, dtype)
        self.buf = np.zeros(n, dtype) if self.mu > 0 else None

    def state(self):
        return {"sq": self.sq} | ({} if self.buf is None else {"buf": self.buf})

    def step(self, params, g, lr):
        if self.wd:
            g += self.wd * params
        sq, tmp = self.sq, self.tmp
        np.multiply(g, g, out=tmp)
        np.subtract(sq, tmp, out=sq)
        sq *= self.rho
        sq += tmp
        np.sqrt(sq, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        if self.buf is not None:
            self.buf *= self.mu
            self.buf += tmp
            tmp = self.buf
        np.multiply(tmp, lr, out=self.tmp)
        params -= self.tmp
        return self.tmp, 1.0


class Adagrad:
    """Adagrad with L2 decay."""

    folds_lr = False

    def __init__(self, p, n, dtype):
        self.eps, self.wd = p["eps"], p["weight_decay"]
        self.sum, self.tmp = np.zeros(n, dtype), np.empty(n, dtype)

    def state(self):
        return {"sum": self.sum}

    def step(self, params, g, lr):
        if self.wd:
            g += self.wd * params
        tmp = self.tmp
        np.multiply(g, g, out=tmp)
        self.sum += tmp
        np.sqrt(self.sum, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        tmp *= lr
        params -= tmp
        return tmp, 1.0


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}


def load_optimizer_state(optimizer, arrays):
    """Copy checkpointed state ``arrays`` (name -> array) into ``optimizer``'s buffers."""
    for name, target in optimizer.state().items():
        np.copyto(target, arrays[name])

"""Training: losses with their hand-written gradients, one-step helpers, and the loop :func:`fit`.

A training step is a plain function the chapter writes (or takes from here): it computes a loss,
pulls the loss's gradient back to the parameters, hands it to an optimiser, and returns
``(loss, info)``.  :func:`fit` calls it ``n_iters`` times and keeps a :class:`History`.  Nothing here
holds gradients between calls.

Progress lines have one fixed format, ``iter  100 | loss 0.012345 | nfe 56 | nfe_back 80``, so that an
executed notebook prints the same text every time; a progress bar is drawn only for a person at a
terminal (a TTY, outside CI and outside Jupyter).
"""

import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import check_int
from .gradients import odeint_vjp


def _same_shape(pred, target):
    """``pred`` and ``target`` as float arrays of one shape, or a ``ValueError`` (no silent broadcast)."""
    pred, target = np.asarray(pred, dtype=float), np.asarray(target, dtype=float)
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {pred.shape} but target has shape {target.shape}; they must match")
    if pred.size == 0:
        raise ValueError("pred and target must not be empty")
    return pred, target


def _logits_and_labels(logits, labels):
    """Check ``logits`` ``(n, k)`` and integer ``labels`` ``(n,)`` in ``0..k-1``; return them as arrays."""
    z, labels = np.asarray(logits, dtype=float), np.asarray(labels)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise ValueError(f"logits must have shape (n, n_classes) with n, n_classes >= 1, got {z.shape}")
    if labels.shape != (z.shape[0],):
        raise ValueError(f"labels must have shape ({z.shape[0]},), one per row of logits, got {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= z.shape[1]:
        raise ValueError(f"labels must lie in 0..{z.shape[1] - 1}, got {labels.min()}..{labels.max()}")
    return z, labels


def mse(pred, target):
    """The mean squared error over all entries, and its gradient with respect to ``pred``.

    Returns:
        ``(loss, grad)``: ``mean((pred - target)**2)`` and ``2 (pred - target) / pred.size``.
    """
    pred, target = _same_shape(pred, target)
    r = pred - target
    return float(np.mean(r * r)), 2.0 * r / r.size


def mae(pred, target):
    """The mean absolute error over all entries (``ode_demo``'s loss), and its (sub)gradient.

    Returns:
        ``(loss, grad)``: ``mean(|pred - target|)`` and ``sign(pred - target) / pred.size``.
    """
    pred, target = _same_shape(pred, target)
    r = pred - target
    return float(np.mean(np.abs(r))), np.sign(r) / r.size


def softmax(logits):
    """Row-wise softmax, computed stably by subtracting each row's maximum."""
    z = np.asarray(logits, dtype=float)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_cross_entropy(logits, labels):
    """The mean cross-entropy of a softmax classifier, and its gradient with respect to the logits.

    With ``p = softmax(logits)``, the loss is ``-mean_i log p[i, labels[i]]`` and its gradient is
    ``(p - one_hot(labels)) / n``.

    Args:
        logits: shape ``(n, n_classes)``.
        labels: integer labels, shape ``(n,)``.

    Returns:
        ``(loss, grad)``, ``grad`` of the shape of ``logits``.
    """
    z, labels = _logits_and_labels(logits, labels)
    rows = np.arange(z.shape[0])
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    grad = np.exp(log_p)
    grad[rows, labels] -= 1.0
    return float(-np.mean(log_p[rows, labels])), grad / z.shape[0]


def accuracy(logits, labels):
    """The fraction of rows whose largest logit is at the true label."""
    z, labels = _logits_and_labels(logits, labels)
    return float(np.mean(np.argmax(z, axis=1) == labels))


def trajectory_step(f, optimizer, batch, *, loss=mse, **solver):
    """One step of fitting dynamics to trajectory windows: solve, compare, pull back, update.

    Args:
        f: the dynamics (the dynamics protocol).
        optimizer: an optimiser over ``f.params`` (e.g. :class:`~neuralode.optim.Adam`).
        batch: a :class:`~neuralode.data.Windows` ``(y0, t, ys, starts)``.
        loss: ``loss(pred, target) -> (value, grad)``, :func:`mse` or :func:`mae`.
        **solver: options for :func:`~neuralode.odeint_vjp` (``gradient``, ``rtol``, ...).

    Returns:
        ``(loss, info)``: the loss before the update, and ``info`` with ``nfe_forward`` and
        ``nfe_backward``, the evaluations of the forward solve and of the backward pass.
    """
    pred, pullback = odeint_vjp(f, batch.y0, batch.t, **solver)
    value, pred_bar = loss(pred, batch.ys)
    params_bar = pullback(pred_bar)[1]
    optimizer.step(params_bar)
    return value, nfe_info(pullback)


def classifier_step(model, optimizer, x, labels):
    """One step of a classifier with ``forward_vjp`` (:class:`~neuralode.models.ODENet`, ``ResNetClassifier``).

    Returns:
        ``(loss, info)``: the softmax cross-entropy before the update, and ``info`` with the batch
        ``accuracy`` and, for an ODE-Net, ``nfe_forward`` and ``nfe_backward``.
    """
    logits, pullback = model.forward_vjp(x)
    value, logits_bar = softmax_cross_entropy(logits, labels)
    params_bar = pullback(logits_bar)[1]
    optimizer.step(params_bar)
    return value, {"accuracy": accuracy(logits, labels), **nfe_info(getattr(pullback, "flow", pullback))}


def nfe_info(pullback):
    """``{"nfe_forward": ..., "nfe_backward": ...}`` from a called :class:`~neuralode.gradients.Pullback`.

    Chen et al. (2018, Figure 3) count NFE-F, the evaluations of ``f`` in the forward solve, and NFE-B,
    those of the backward pass (of the adjoint's augmented dynamics, or of ``f.vjp`` for backprop).
    Returns ``{}`` for a pullback that does not count.
    """
    if not hasattr(pullback, "nfe_backward"):
        return {}
    return {"nfe_forward": pullback.nfe_forward, "nfe_backward": pullback.nfe_backward}


@dataclass
class History:
    """What :func:`fit` records.

    Attributes:
        loss: the loss returned by every step.
        nfe_forward, nfe_backward: the evaluations the steps reported (``info["nfe_forward"]``, ...),
            one entry per step that reported them.
        metrics: every other number in ``info``, as ``name -> list``.
        val_iters, val_loss: the iterations at which ``val_fn`` ran, and what it returned.
        best_iter, best_val_loss: the best validation so far (``None`` without ``val_fn``).
        stopped_iter: the iteration at which early stopping ended the run, else ``None``.
        seconds: the wall time of the run (varies from run to run; never printed).
    """

    loss: list = field(default_factory=list)
    nfe_forward: list = field(default_factory=list)
    nfe_backward: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    val_iters: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    best_iter: int = None
    best_val_loss: float = None
    stopped_iter: int = None
    seconds: float = 0.0

    @property
    def n_iters(self):
        """The number of steps taken."""
        return len(self.loss)

    def record(self, loss, info):
        """Append one step's loss and the numbers in its ``info``."""
        self.loss.append(float(loss))
        for key, value in info.items():
            target = getattr(self, key) if key in ("nfe_forward", "nfe_backward") else self.metrics.setdefault(key, [])
            target.append(value)


def format_line(it, loss, info, val_loss=None):
    """The progress line of one iteration, e.g. ``iter  100 | loss 0.012345 | nfe 56 | nfe_back 80``.

    Example:
        >>> format_line(100, 0.0123449, {"nfe_forward": 56})
        'iter  100 | loss 0.012345 | nfe 56'
    """
    line = f"iter {it:4d} | loss {loss:.6f}"
    if "nfe_forward" in info:
        line += f" | nfe {info['nfe_forward']}"
    if "nfe_backward" in info:
        line += f" | nfe_back {info['nfe_backward']}"
    if val_loss is not None:
        line += f" | val {val_loss:.6f}"
    return line


def show_progress_bar(stream):
    """Whether to draw a progress bar: only on a terminal, and neither in CI nor inside a Jupyter kernel."""
    isatty = getattr(stream, "isatty", lambda: False)
    return bool(isatty()) and not os.environ.get("CI") and not _in_jupyter_kernel()


def _in_jupyter_kernel():
    """Whether this code runs in a Jupyter kernel (a notebook being executed, or a person's notebook)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if hasattr(ipython, "get_ipython") else None
    return shell is not None and hasattr(shell, "kernel")


class _Bar:
    """A one-line bar redrawn in place with a carriage return; ``clear`` makes room for a printed line."""

    def __init__(self, total, stream, width=30):
        self.total, self.stream, self.width, self.shown = total, stream, width, False

    def update(self, it):
        done = self.width * it // max(self.total, 1)
        self.stream.write(f"\r[{'#' * done}{'-' * (self.width - done)}] {it}/{self.total}")
        self.stream.flush()
        self.shown = True

    def clear(self):
        if self.shown:
            self.stream.write("\r" + " " * (self.width + 24) + "\r")
            self.shown = False


class _Stopper:
    """Early stopping: remember the best validation loss and the parameters that reached it."""

    def __init__(self, params, patience, min_delta):
        self.params, self.patience, self.min_delta = params, patience, min_delta
        self.best, self.best_iter, self.best_params, self.bad = np.inf, None, None, 0

    def update(self, it, val_loss):
        """Record a validation; return ``True`` when ``patience`` validations in a row brought no gain."""
        if val_loss < self.best - self.min_delta:
            self.best, self.best_iter, self.bad = val_loss, it, 0
            if self.params is not None:
                self.best_params = [p.copy() for p in self.params]
            return False
        self.bad += 1
        return self.patience is not None and self.bad >= self.patience

    def restore(self):
        """Copy the best parameters back into the model's arrays, in place."""
        if self.best_params is not None:
            for p, best in zip(self.params, self.best_params):
                p[...] = best


def fit(step, n_iters, *, report_every=100, val_fn=None, val_every=None, patience=None, params=None,
        min_delta=0.0, progress=None, stream=None):
    """Call ``step()`` up to ``n_iters`` times, print a line every ``report_every``, and keep a :class:`History`.

    Args:
        step: a function of no arguments that takes one training step and returns ``(loss, info)``
            (or just ``loss``); ``info`` is a dict of numbers such as ``nfe_forward``, ``nfe_backward``.
        n_iters: the maximum number of steps.
        report_every: print a progress line at every multiple of it (``None`` or 0: never).
        val_fn: a function of no arguments returning a validation loss, run every ``val_every`` steps.
        val_every: defaults to ``report_every`` (or 1 if that is ``None``).
        patience: stop after this many validations in a row without improvement (needs ``val_fn``).
        params: the model's parameter arrays; with ``val_fn``, the best ones are copied back at the end.
        min_delta: the least decrease of the validation loss that counts as an improvement.
        progress: draw a progress bar (``None``: only at a terminal; see :func:`show_progress_bar`).
        stream: where lines go (default ``sys.stdout``).

    Returns:
        A :class:`History`.
    """
    n_iters = check_int("n_iters", n_iters, minimum=0)
    if not callable(step):
        raise TypeError(f"step must be a function of no arguments, got {type(step).__name__}")
    if patience is not None and val_fn is None:
        raise ValueError("patience needs val_fn, the validation loss it watches")
    stream = sys.stdout if stream is None else stream
    val_every = val_every or report_every or 1
    bar = _Bar(n_iters, stream) if (show_progress_bar(stream) if progress is None else progress) else None
    history, stopper, start = History(), _Stopper(params, patience, min_delta), time.perf_counter()
    for it in range(1, n_iters + 1):
        out = step()
        loss, info = out if isinstance(out, tuple) else (out, {})
        history.record(loss, info)
        stop, val = _validate(it, val_fn, val_every, history, stopper)
        _report(it, loss, info, val, report_every, bar, stream, force=stop)
        if stop:
            history.stopped_iter = it
            if bar is not None:
                bar.clear()
            print(f"early stop at iter {it}: best val {stopper.best:.6f} at iter {stopper.best_iter}", file=stream)
            break
    if bar is not None:
        bar.clear()
    stopper.restore()
    history.seconds = time.perf_counter() - start
    return history


def _validate(it, val_fn, val_every, history, stopper):
    """Run ``val_fn`` if it is due; return ``(stop, val_loss)``."""
    if val_fn is None or it % val_every:
        return False, None
    val = float(val_fn())
    history.val_iters.append(it)
    history.val_loss.append(val)
    stop = stopper.update(it, val)
    history.best_iter, history.best_val_loss = stopper.best_iter, stopper.best
    return stop, val


def _report(it, loss, info, val, report_every, bar, stream, force=False):
    """Print the progress line if it is due (or ``force``), and move the bar."""
    if (report_every and it % report_every == 0) or force:
        if bar is not None:
            bar.clear()
        print(format_line(it, loss, info, val), file=stream)
    if bar is not None:
        bar.update(it)

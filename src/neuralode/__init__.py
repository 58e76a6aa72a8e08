"""neuralode: a small NumPy engine for neural ordinary differential equations.

Every derivative in it is a hand-written vector-Jacobian or Jacobian-vector product that a reader can
open and check.  The public surface:

* :func:`odeint` and :func:`integrate` solve initial value problems (``neuralode.odeint``), with explicit
  Runge–Kutta methods or, for stiff problems, implicit ones (:mod:`neuralode.implicit`);
* :func:`odeint_vjp` differentiates a solve, by backprop through the solver or by the adjoint method;
* :func:`odeint_event` solves until an event function crosses zero, and :func:`odeint_event_vjp`
  differentiates the event's time and state (:mod:`neuralode.events`);
* :mod:`neuralode.nn` holds layers and vector fields under the dynamics protocol (``f(t, y)``,
  ``f.params``, ``f.vjp``); :mod:`neuralode.models` the models built on a solve (ResNet, ODE-Net);
* :mod:`neuralode.params` flattens a model's parameters into one vector and back;
* :mod:`neuralode.data` makes toy data sets; :mod:`neuralode.train` holds losses and the loop ``fit``;
* :mod:`neuralode.checks` holds finite differences, the dot-product test and observed orders;
* :mod:`neuralode.plotting` shows the chapters' animations as players that work offline.
* :mod:`neuralode.physics` holds known models (Lotka-Volterra) and the hybrid of a known field and a
  learned one; :mod:`neuralode.shooting` fits a trajectory by multiple shooting; :mod:`neuralode.sparse`
  reads a formula back from samples by sparse regression (SINDy).
"""

from . import checks, implicit, nn, optim, params, stepsize, tableaux
from .errors import (ConvergenceError, EventNotFoundError, GrazingEventError, IntegrationError, NonFiniteError,
                     StepSizeUnderflowError, TooManyStepsError)
from .gradients import odeint_vjp
from .events import integrate_event, odeint_event, odeint_event_vjp
from .solver import ODESolution, integrate, odeint
from .tableaux import IMPLICIT_TABLEAUX, TABLEAUX, ButcherTableau
from . import cnf, data, events, latent, models, physics, plotting, problems, regularise, shooting, sparse, train

__all__ = [
    "ButcherTableau", "ConvergenceError", "IMPLICIT_TABLEAUX", "IntegrationError", "NonFiniteError", "ODESolution",
    "StepSizeUnderflowError", "TABLEAUX", "TooManyStepsError", "checks", "integrate", "nn", "odeint", "odeint_vjp", "optim", "stepsize", "tableaux",
]
__all__ += ["cnf", "data", "models", "params", "physics", "plotting", "shooting", "sparse", "train"]
__all__ += ["EventNotFoundError", "GrazingEventError", "events", "integrate_event", "odeint_event", "odeint_event_vjp"]

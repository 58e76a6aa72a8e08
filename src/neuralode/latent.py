"""Latent ODEs for irregularly sampled time series (Rubanova, Chen & Duvenaud 2019; Chen et al. 2018, §5).

A variational autoencoder over whole series:

* a recognition RNN reads each series backward in time (its input: the masked values, the mask and
  the gap to the series' next observation) and gives a Gaussian posterior ``q(z0) = N(mu, exp(logvar))``;
* ``z0 = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` drawn from the caller's ``rng``
  (the reparameterisation trick of Kingma & Welling 2014);
* :class:`LatentODE` carries ``z0`` along ``dz/dt = f(z)`` with :func:`~neuralode.odeint_vjp`;
  :class:`RNNBaseline` instead steps a tanh RNN cell whose input is the time gap (the RNN-VAE baseline);
* a decoder MLP maps each latent state to the mean of a Gaussian with fixed standard deviation.

The loss is the negative evidence lower bound (ELBO), averaged over series:
``-(sum of masked Gaussian log-likelihoods) + KL(q(z0) || N(0, I))``. Every derivative is written by hand.
"""

import numpy as np

from .errors import check_array, check_int, check_number, check_rng
from .gradients import SOLVER_OPTIONS, check_options, odeint_vjp
from .nn import MLP, Linear
from .solver import odeint

LOG_2PI = float(np.log(2.0 * np.pi))


def _value_error(check, *args, **kwargs):
    """Run one of the shared checks of :mod:`neuralode.errors`, raising its ``TypeError`` as a ``ValueError``.

    Every argument check of this module raises ``ValueError`` naming the argument.
    """
    try:
        return check(*args, **kwargs)
    except TypeError as error:
        raise ValueError(str(error)) from None


def _same_shape(name, value, other, like, finite=True):
    """``value`` as a real array (finite unless told otherwise) of the shape of ``like``, named ``other``."""
    value = check_array(name, value, finite=finite)
    if value.shape != like.shape:
        raise ValueError(f"{name} has shape {value.shape} but {other} has shape {like.shape}: they must have "
                         "one shape (nothing is broadcast)")
    return value


def gaussian_log_likelihood(values, mean, mask, std):
    """``sum mask * log N(values; mean, std^2)`` and its gradient with respect to ``mean``.

    Entries where ``mask == 0`` contribute nothing, whatever ``values`` holds there (NaN included).
    ``values``, ``mean`` and ``mask`` must share one shape (no broadcasting), ``mask`` holds 0 and 1,
    ``std`` is a positive finite number.

    Example:
        >>> value, mean_bar = gaussian_log_likelihood(np.zeros(2), np.zeros(2), np.ones(2), 1.0)
        >>> bool(np.isclose(value, -np.log(2 * np.pi), rtol=0, atol=1e-12)), mean_bar.tolist()
        (True, [0.0, 0.0])
    """
    mean = check_array("mean", mean)
    values, mask = _same_shape("values", values, "mean", mean, False), _same_shape("mask", mask, "mean", mean)
    std = _value_error(check_number, "std", std, low=0.0, strict=True)
    if not np.all((mask == 0) | (mask == 1)):
        raise ValueError("mask must hold only 0 (not observed) and 1 (observed)")
    if not np.all(np.isfinite(values[mask > 0])):
        raise ValueError("values must be finite where mask is 1")
    resid = np.where(mask > 0, np.asarray(values, float), 0.0) - np.where(mask > 0, mean, 0.0)
    value = -0.5 * np.sum(mask * (resid / std) ** 2) - np.sum(mask) * (np.log(std) + 0.5 * LOG_2PI)
    return float(value), mask * resid / std**2


def gaussian_kl(mu, logvar):
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over all entries, and its gradient ``(mu_bar, logvar_bar)``.

    ``KL = 1/2 sum (mu^2 + exp(logvar) - 1 - logvar)``; ``mu`` and ``logvar`` finite, of one shape.

    Example:
        >>> gaussian_kl(np.zeros(3), np.zeros(3))[0]
        0.0
    """
    mu = check_array("mu", mu)
    logvar = _same_shape("logvar", logvar, "mu", mu)
    var = np.exp(logvar)
    value = 0.5 * np.sum(mu**2 + var - 1.0 - logvar)
    return float(value), (np.array(mu, float), 0.5 * (var - 1.0))


class RNNCell:
    """``h_new = tanh([h, x] @ W.T + b)``: a tanh RNN cell with its VJP and JVP."""

    def __init__(self, n_hidden, n_input, rng):
        self.n_hidden, self.n_input = n_hidden, n_input
        self.linear = Linear(n_hidden + n_input, n_hidden, rng)

    @property
    def params(self):
        return self.linear.params

    def forward(self, h, x):
        """The new hidden state for a batch ``h`` of shape ``(n, H)`` and inputs ``x`` of shape ``(n, D)``."""
        return np.tanh(self.linear.forward(np.concatenate([h, x], axis=1)))

    def vjp(self, h, x, h_new, v):
        """``(v . dh_new/dh, v . dh_new/dx, [v . dh_new/dW, v . dh_new/db])``, with ``tanh' = 1 - tanh^2``."""
        a_bar = v * (1.0 - h_new**2)
        hx_bar, grads = self.linear.vjp(np.concatenate([h, x], axis=1), a_bar)
        return hx_bar[:, : self.n_hidden], hx_bar[:, self.n_hidden:], grads

    def jvp(self, h, x, uh, ux):
        """``dh_new/dh . uh + dh_new/dx . ux``."""
        h_new = self.forward(h, x)
        return (1.0 - h_new**2) * self.linear.jvp(np.concatenate([uh, ux], axis=1))


def encoder_inputs(times, values, mask):
    """The recognition RNN's inputs ``[values * mask, mask, gap]`` (``(n, T, 2 D + 1)``) and ``observed`` (``(n, T)``).

    ``gap[i, k]`` is the time from ``times[k]`` to series ``i``'s next observation (0 if none follows);
    ``observed[i, k]`` is 1 where series ``i`` has any value at ``times[k]``.
    """
    observed = (mask.sum(axis=2) > 0).astype(float)
    n, T = observed.shape
    gap, next_t = np.zeros((n, T)), np.full(n, np.nan)
    for k in reversed(range(T)):
        gap[:, k] = np.where(np.isnan(next_t), 0.0, next_t - times[k])
        next_t = np.where(observed[:, k] > 0, times[k], next_t)
    x = np.concatenate([np.where(mask > 0, values, 0.0), mask, gap[:, :, None]], axis=2)
    return x, observed


class Encoder:
    """The recognition network: an RNN read backward in time, optionally an ODE-RNN.

    At each time, from last to first, a series with an observation there updates its hidden state with
    :class:`RNNCell`; one without keeps it. With ``ode=True`` (the ODE-RNN of Rubanova et al. 2019) the
    hidden state also flows by ``dh/dt = g(h)`` from one time back to the previous one. Its
    backpropagation through time is :meth:`backward`.
    """

    def __init__(self, obs_dim, n_hidden, rng, ode=False, solver=None):
        self.cell = RNNCell(n_hidden, 2 * obs_dim + 1, rng)
        self.flow = MLP([n_hidden, n_hidden, n_hidden], rng=rng) if ode else None
        self.solver, self.n_hidden = solver or {"method": "rk4"}, n_hidden

    @property
    def params(self):
        return self.cell.params + (self.flow.params if self.flow is not None else [])

    def forward(self, times, x, observed):
        """The hidden state at ``times[0]`` (``(n, H)``) and the tape :meth:`backward` needs."""
        h, tape = np.zeros((x.shape[0], self.n_hidden)), []
        for k in reversed(range(len(times))):
            pullback = None
            if self.flow is not None and k < len(times) - 1:
                hs, pullback = odeint_vjp(self.flow, h, np.array([times[k + 1], times[k]]), **self.solver)
                h = hs[-1]
            new = self.cell.forward(h, x[:, k])
            tape.append((k, h, new, pullback))
            o = observed[:, k:k + 1]
            h = o * new + (1.0 - o) * h
        return h, tape

    def backward(self, x, observed, tape, h_bar):
        """Backpropagation through time: ``(x_bar, params_bar)`` from ``h_bar = dL/dh(times[0])``."""
        grads = [np.zeros_like(p) for p in self.params]
        x_bar = np.zeros_like(x)
        for k, h, new, pullback in reversed(tape):
            o = observed[:, k:k + 1]
            dh, x_bar[:, k], cell_grads = self.cell.vjp(h, x[:, k], new, o * h_bar)
            h_bar = (1.0 - o) * h_bar + dh
            for g, c in zip(grads, cell_grads):
                g += c
            if pullback is not None:
                h_bar, flow_grads, _ = pullback(np.stack([np.zeros_like(h_bar), h_bar]))
                for g, c in zip(grads[2:], flow_grads):
                    g += c
        return x_bar, grads

    def jvp(self, times, x, observed, u):
        """The tangent of the hidden state at ``times[0]`` for a tangent ``u`` of the inputs ``x``.

        For the ODE-RNN the tangent ``dh`` is carried between observations by the variational equation
        ``d(dh)/dt = dg/dh . dh``, solved beside ``h`` with the same method: an explicit Runge-Kutta
        method applied to ``(h, dh)`` gives exactly the derivative of its own step (Hairer, Norsett &
        Wanner, I.II.6), so this JVP is the transpose of :meth:`backward` with ``gradient="backprop"``.
        """
        h, dh = np.zeros((x.shape[0], self.n_hidden)), np.zeros((x.shape[0], self.n_hidden))
        for k in reversed(range(len(times))):
            if self.flow is not None and k < len(times) - 1:
                h, dh = self._flow_jvp(h, dh, times[k + 1], times[k])
            new, dnew = self.cell.forward(h, x[:, k]), self.cell.jvp(h, x[:, k], dh, u[:, k])
            o = observed[:, k:k + 1]
            h, dh = o * new + (1.0 - o) * h, o * dnew + (1.0 - o) * dh
        return dh

    def _flow_jvp(self, h, dh, t_from, t_to):
        """``(h(t_to), dh(t_to))``: the hidden state and its tangent carried by ``dh/dt = g(h)``."""
        shape, n = h.shape, h.size

        def variational(t, s):
            y, dy = s[:n].reshape(shape), s[n:].reshape(shape)
            return np.concatenate([self.flow(t, y).ravel(), self.flow.jvp(t, y, dy).ravel()])
        options = {k: v for k, v in self.solver.items() if k in SOLVER_OPTIONS}
        end = odeint(variational, np.concatenate([h.ravel(), dh.ravel()]), np.array([t_from, t_to]), **options)[-1]
        return end[:n].reshape(shape), end[n:].reshape(shape)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_times(times, name="times", min_size=2):
    """``times`` as a 1-D, finite, strictly increasing float array of at least ``min_size`` times."""
    times = check_array(name, times)
    if times.ndim != 1 or times.size < min_size or np.any(np.diff(times) <= 0):
        raise ValueError(f"{name} must be a 1-D, finite, strictly increasing array of at least {min_size} "
                         f"time{'s' if min_size > 1 else ''}, got {times!r:.80}")
    return times


def _check_z0(z0, latent_dim):
    z0 = check_array("z0", z0)
    if z0.ndim != 2 or z0.shape[1] != latent_dim or z0.shape[0] < 1:
        raise ValueError(f"z0 must have shape (n, {latent_dim}), got {z0.shape}")
    return z0


def _check_series(times, values, mask, obs_dim):
    times = _check_times(times)
    values, mask = check_array("values", values, finite=False), check_array("mask", mask)
    shape = (values.shape[0] if values.ndim == 3 else -1, times.size, obs_dim)
    if values.ndim != 3 or values.shape[1:] != shape[1:] or values.shape[0] < 1:
        raise ValueError(f"values must have shape (n, {times.size}, {obs_dim}), got {values.shape}")
    if mask.shape != values.shape:
        raise ValueError(f"mask must have the shape of values {values.shape}, got {mask.shape}")
    if not np.all((mask == 0) | (mask == 1)):
        raise ValueError("mask must hold only 0 (not observed) and 1 (observed)")
    if not np.all(np.isfinite(values[mask > 0])):
        raise ValueError("values must be finite where mask is 1")
    return times, values, mask


class _SequenceVAE:
    """Shared parts: encoder, posterior head, decoder and the negative ELBO; subclasses generate."""

    def _setup(self, obs_dim, latent_dim, hidden, obs_std, encoder, rng, solver):
        self.obs_dim = _check_positive_int("obs_dim", obs_dim)
        self.latent_dim = _check_positive_int("latent_dim", latent_dim)
        self.hidden = _check_positive_int("hidden", hidden)
        obs_std = _value_error(check_number, "obs_std", obs_std, low=0.0, strict=True)
        if encoder not in ("rnn", "odernn"):
            raise ValueError(f"encoder must be 'rnn' or 'odernn', got {encoder!r}")
        rng = _value_error(check_rng, rng)
        _value_error(check_options, **solver)
        self.obs_std, self.solver = float(obs_std), solver
        self.encoder = Encoder(obs_dim, hidden, rng, ode=encoder == "odernn", solver=solver)
        self.head = Linear(hidden, 2 * latent_dim, rng)
        return rng

    @property
    def params(self):
        """Every parameter array: encoder, posterior head, generator, decoder (updated in place by optimisers)."""
        return self.encoder.params + self.head.params + self._generator_params() + self.decoder.params

    def encode(self, times, values, mask):
        """The posterior ``(mu, logvar)`` of ``z0``, each of shape ``(n, latent_dim)``."""
        times, values, mask = _check_series(times, values, mask, self.obs_dim)
        x, observed = encoder_inputs(times, values, mask)
        h0, _ = self.encoder.forward(times, x, observed)
        out = self.head.forward(h0)
        return out[:, : self.latent_dim], out[:, self.latent_dim:]

    def decode(self, z0, times):
        """The predicted means ``(n, len(times), obs_dim)`` from latent initial states ``z0`` at ``times[0]``.

        ``z0`` is finite, of shape ``(n, latent_dim)``; ``times`` increasing, one time or more.
        """
        z0, times = _check_z0(z0, self.latent_dim), _check_times(times, min_size=1)
        traj = self._generate(z0, times)[0]
        T, n, S = traj.shape
        return self.decoder.forward(traj.reshape(T * n, S)).reshape(T, n, self.obs_dim).transpose(1, 0, 2)

    def reconstruct(self, times, values, mask, pred_times=None):
        """Encode the observed values and decode the posterior mean of ``z0`` at ``pred_times``.

        ``pred_times`` (default ``times``) is any increasing array of one time or more from ``times[0]``
        on: between the observations (interpolation) or beyond them (extrapolation). The latent state
        starts at ``times[0]``, where the encoder puts ``z0``, and is carried to each of ``pred_times``.

        Returns:
            The predicted means, shape ``(n, len(pred_times), obs_dim)``.
        """
        times = _check_series(times, values, mask, self.obs_dim)[0]
        mu, _ = self.encode(times, values, mask)
        if pred_times is None:
            return self.decode(mu, times)
        pred_times = _check_times(pred_times, "pred_times", min_size=1)
        if pred_times[0] < times[0]:
            raise ValueError(f"pred_times must start at or after times[0] = {times[0]}, got {pred_times[0]}")
        if pred_times[0] == times[0]:
            return self.decode(mu, pred_times)
        return self.decode(mu, np.concatenate([[times[0]], pred_times]))[:, 1:]

    def loss_and_grad(self, times, values, mask, rng):
        """The negative ELBO averaged over series, and its gradient (one array per entry of :attr:`params`)."""
        times, values, mask = _check_series(times, values, mask, self.obs_dim)
        rng = _value_error(check_rng, rng, required=True)
        n, L = values.shape[0], self.latent_dim
        x, observed = encoder_inputs(times, values, mask)
        h0, tape = self.encoder.forward(times, x, observed)
        out = self.head.forward(h0)
        mu, logvar = out[:, :L], out[:, L:]
        eps = rng.standard_normal(mu.shape)
        sigma = np.exp(0.5 * logvar)
        traj, pullback = self._generate(mu + sigma * eps, times)
        T, _, S = traj.shape
        flat = traj.reshape(T * n, S)
        pred = self.decoder.forward(flat).reshape(T, n, self.obs_dim).transpose(1, 0, 2)
        loglik, pred_bar = gaussian_log_likelihood(values, pred, mask, self.obs_std)
        kl, (mu_bar_kl, logvar_bar_kl) = gaussian_kl(mu, logvar)
        _, flat_bar, dec_grads = self.decoder.forward_and_backward(flat, -pred_bar.transpose(1, 0, 2).reshape(T * n, -1) / n)
        z0_bar, gen_grads = pullback(flat_bar.reshape(T, n, S))
        mu_bar = z0_bar + mu_bar_kl / n
        logvar_bar = z0_bar * eps * 0.5 * sigma + logvar_bar_kl / n
        h0_bar, head_grads = self.head.vjp(h0, np.concatenate([mu_bar, logvar_bar], axis=1))
        _, enc_grads = self.encoder.backward(x, observed, tape, h0_bar)
        return (kl - loglik) / n, enc_grads + head_grads + gen_grads + dec_grads


class LatentODE(_SequenceVAE):
    """The latent ODE: ``z0 ~ q(z0 | series)``, ``dz/dt = f(z)`` by an MLP, observations by a decoder MLP.

    Args:
        obs_dim: the dimension of each observation.
        latent_dim: the dimension of ``z``.
        hidden: the width of the recognition RNN, the dynamics MLP and the decoder MLP.
        rng: the random generator for the initial weights.
        method, rtol, atol, step_size: the solver of the latent ODE (and of an ODE-RNN encoder).
        gradient: how :func:`~neuralode.odeint_vjp` differentiates the solve (``"adjoint"``, ``"backprop"``...).
        obs_std: the fixed standard deviation of the Gaussian observation model.
        encoder: ``"rnn"`` or ``"odernn"``.

    The solver options are checked when the model is built
    (:func:`~neuralode.gradients.check_options`), so a mistake there is named at once.

    Example:
        >>> model = LatentODE(2, 3, hidden=8, method="rk4")
        >>> t = np.linspace(0.0, 1.0, 5); x = np.zeros((4, 5, 2)); m = np.ones_like(x)
        >>> loss, grads = model.loss_and_grad(t, x, m, np.random.default_rng(0))
        >>> len(grads) == len(model.params)
        True
    """

    def __init__(self, obs_dim, latent_dim, *, hidden=20, rng=None, method="dopri5", rtol=1e-5, atol=1e-7,
                 step_size=None, gradient="adjoint", obs_std=0.1, encoder="rnn"):
        solver = {"method": method, "rtol": rtol, "atol": atol, "step_size": step_size, "gradient": gradient}
        rng = self._setup(obs_dim, latent_dim, hidden, obs_std, encoder, rng, solver)
        self.dynamics = MLP([self.latent_dim, self.hidden, self.latent_dim], rng=rng)
        self.decoder = MLP([self.latent_dim, self.hidden, self.obs_dim], rng=rng)

    def _generator_params(self):
        return self.dynamics.params

    def latent_trajectory(self, z0, times):
        """``z(times)``, shape ``(len(times), n, latent_dim)``, from ``z0`` at ``times[0]``."""
        return self._generate(_check_z0(z0, self.latent_dim), _check_times(times, min_size=1))[0]

    def _generate(self, z0, times):
        zs, pb = odeint_vjp(self.dynamics, z0, times, **self.solver)

        def pullback(zs_bar):
            z0_bar, params_bar, _ = pb(zs_bar)
            return z0_bar, params_bar
        return zs, pullback


class RNNBaseline(_SequenceVAE):
    """The RNN-VAE baseline: the same encoder and decoder, with the ODE replaced by a discrete RNN.

    ``g_0 = tanh(z0 @ A.T + c)`` and ``g_{k+1} = tanh([g_k, times[k+1] - times[k]] @ W.T + b)``: the
    generator sees the time gap as an input but moves only in jumps, once per output time.
    Arguments as for :class:`LatentODE`; ``method``, ``step_size`` and ``gradient`` only serve an
    ODE-RNN encoder (``encoder="odernn"``), so that both models can share one encoder design.
    """

    def __init__(self, obs_dim, latent_dim, *, hidden=20, rng=None, obs_std=0.1, encoder="rnn", method="rk4",
                 step_size=None, gradient="adjoint"):
        solver = {"method": method, "step_size": step_size, "gradient": gradient}
        rng = self._setup(obs_dim, latent_dim, hidden, obs_std, encoder, rng, solver)
        self.lift = Linear(self.latent_dim, self.hidden, rng)
        self.cell = RNNCell(self.hidden, 1, rng)
        self.decoder = MLP([self.hidden, self.hidden, self.obs_dim], rng=rng)

    def _generator_params(self):
        return self.lift.params + self.cell.params

    def _generate(self, z0, times):
        g = [np.tanh(self.lift.forward(z0))]
        gaps = np.diff(times)
        for dt in gaps:
            g.append(self.cell.forward(g[-1], np.full((z0.shape[0], 1), dt)))
        traj = np.stack(g)

        def pullback(traj_bar):
            grads, g_bar = [np.zeros_like(p) for p in self.cell.params], traj_bar[-1].copy()
            for k in reversed(range(len(gaps))):
                dg, _, cell_grads = self.cell.vjp(g[k], np.full((z0.shape[0], 1), gaps[k]), g[k + 1], g_bar)
                g_bar = traj_bar[k] + dg
                for acc, c in zip(grads, cell_grads):
                    acc += c
            z0_bar, lift_grads = self.lift.vjp(z0, g_bar * (1.0 - g[0] ** 2))
            return z0_bar, lift_grads + grads
        return traj, pullback


def irregular_spirals(n_series, n_obs, *, n_times=40, t_max=6.0, observe_until=None, noise=0.05, rng=None):
    """Noisy spirals, half clockwise and half counter-clockwise, each observed at its own random times.

    Each series is ``r(t) (cos(phi0 + s t), sin(phi0 + s t))`` with ``r(t) = r0 + 0.15 t`` (an Archimedean
    spiral, as torchdiffeq's ``examples/latent_ode.py`` draws them), ``s = -1`` (clockwise) or ``+1``, a
    random start angle ``phi0`` and radius ``r0``, on a grid of ``n_times`` times in ``[0, t_max]``.

    Args:
        n_series: the number of series.
        n_obs: how many grid times each series is observed at, drawn at random among the times up to
            ``observe_until`` (default ``t_max``, at least 0).
        n_times, t_max: the grid's size and its last time (positive, finite).
        noise: the standard deviation of the observation noise (non-negative, finite).
        rng: the random generator (a ``numpy.random.Generator``; required).

    Returns:
        ``(times, values, mask, truth, clockwise)``: the grid ``(n_times,)``, noisy values and the mask
        ``(n_series, n_times, 2)``, the noise-free spirals, and a boolean per series.
    """
    n_series, n_obs, n_times = (_check_positive_int(k, v) for k, v in
                                (("n_series", n_series), ("n_obs", n_obs), ("n_times", n_times)))
    rng = _value_error(check_rng, rng, required=True)
    t_max = _value_error(check_number, "t_max", t_max, low=0.0, strict=True)
    noise = _value_error(check_number, "noise", noise, low=0.0)
    times = np.linspace(0.0, t_max, n_times)
    until = t_max if observe_until is None else _value_error(check_number, "observe_until", observe_until, low=0.0)
    candidates = np.flatnonzero(times <= until + 1e-12)
    if n_obs > candidates.size:
        raise ValueError(f"n_obs must be at most the {candidates.size} grid times up to observe_until, got {n_obs}")
    clockwise = np.arange(n_series) % 2 == 0
    s = np.where(clockwise, -1.0, 1.0)[:, None]
    phi = rng.uniform(0, 2 * np.pi, (n_series, 1)) + s * times
    r = rng.uniform(0.5, 1.0, (n_series, 1)) + 0.15 * times
    truth = np.stack([r * np.cos(phi), r * np.sin(phi)], axis=2)
    mask = _random_mask(truth.shape, candidates, np.full(n_series, n_obs), rng)
    return times, truth + noise * rng.standard_normal(truth.shape), mask, truth, clockwise


def _random_mask(shape, candidates, counts, rng):
    """A mask of ``shape`` ``(n, T, D)``: series ``i`` observed at ``counts[i]`` random times among ``candidates``."""
    mask = np.zeros(shape)
    for i, count in enumerate(counts):
        mask[i, np.sort(rng.choice(candidates, count, replace=False))] = 1.0
    return mask


def linear_spirals(n_series, n_obs, times, *, observe_until=None, omega=1.0, decay=0.05, radius=(1.0, 2.0),
                   noise=0.05, rng=None):
    """Noisy spirals that solve a linear ODE, half clockwise and half counter-clockwise, observed at random.

    Series ``i`` is the solution of ``dz/dt = A_i z`` with ``A_i = [[-decay, -s_i omega], [s_i omega, -decay]]``,
    ``s_i = -1`` (clockwise, even ``i``) or ``+1``: ``z(t) = r0 exp(-decay t) (cos(phi0 + s_i omega t),
    sin(phi0 + s_i omega t))`` with a random start angle ``phi0`` and radius ``r0``. A latent ODE with a
    four-dimensional state can represent both families exactly (one rotating plane for each direction).

    Args:
        n_series: the number of series.
        n_obs: how many of ``times`` (up to ``observe_until``, default all) each series is observed at:
            one integer for all series or one per series.
        times: the increasing times at which the spirals are evaluated, e.g. the union of observation
            times followed by the times to predict.
        omega, decay, radius: the angular speed, the decay rate (non-negative, finite) and the range
            ``(low, high)`` of ``r0`` (finite, ``0 < low <= high``).
        noise: the standard deviation of the observation noise (non-negative, finite).
        rng: the random generator (a ``numpy.random.Generator``; required).

    Returns:
        ``(times, values, mask, truth, clockwise)`` as for :func:`irregular_spirals`.

    Example:
        >>> t = np.linspace(0.0, 5.0, 11)
        >>> _, x, m, z, cw = linear_spirals(4, 3, t, rng=np.random.default_rng(0))
        >>> x.shape, m.sum(axis=(1, 2)).tolist(), cw.tolist()
        ((4, 11, 2), [6.0, 6.0, 6.0, 6.0], [True, False, True, False])
    """
    n_series = _check_positive_int("n_series", n_series)
    rng = _value_error(check_rng, rng, required=True)
    times = _check_times(times)
    omega, decay, noise = (_value_error(check_number, name, value, low=0.0)
                           for name, value in (("omega", omega), ("decay", decay), ("noise", noise)))
    low, high = _check_radius(radius)
    until = times[-1] if observe_until is None else _value_error(check_number, "observe_until", observe_until)
    candidates = np.flatnonzero(times <= until + 1e-12)
    counts = _check_counts(n_obs, n_series, candidates.size)
    clockwise = np.arange(n_series) % 2 == 0
    s = np.where(clockwise, -1.0, 1.0)[:, None]
    phi = rng.uniform(0, 2 * np.pi, (n_series, 1)) + s * omega * times
    r = rng.uniform(low, high, (n_series, 1)) * np.exp(-decay * times)
    truth = np.stack([r * np.cos(phi), r * np.sin(phi)], axis=2)
    mask = _random_mask(truth.shape, candidates, counts, rng)
    return times, truth + noise * rng.standard_normal(truth.shape), mask, truth, clockwise


def _check_radius(radius):
    """``(low, high)`` from a pair of finite numbers with ``0 < low <= high``, or a ValueError naming ``radius``."""
    if isinstance(radius, (str, bytes)) or not hasattr(radius, "__len__") or len(radius) != 2:
        raise ValueError(f"radius must be a pair (low, high) with 0 < low <= high, got {radius!r}")
    low, high = (_value_error(check_number, f"radius[{i}]", r) for i, r in enumerate(radius))
    if not 0 < low <= high:
        raise ValueError(f"radius must be a pair (low, high) with 0 < low <= high, got {radius!r}")
    return low, high


def _check_counts(n_obs, n_series, available):
    """``n_obs`` (one integer, or one per series) as an int array of ``n_series`` counts in ``1..available``."""
    if np.ndim(n_obs) == 0:
        counts = np.full(n_series, _value_error(check_int, "n_obs", n_obs))
    else:
        counts = check_array("n_obs", n_obs)
        if counts.shape != (n_series,) or not np.all(counts == np.round(counts)):
            raise ValueError(f"n_obs must be one integer or {n_series} integers, one per series; got {n_obs!r:.60}")
        counts = counts.astype(int)
    if counts.min() < 1 or counts.max() > available:
        raise ValueError(f"n_obs must be integers from 1 to the {available} times up to observe_until, "
                         f"got {n_obs!r:.60}")
    return counts

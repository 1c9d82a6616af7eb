"""Guards of a training run: a stop request (SIGTERM) and the non-finite step guard.

- ``StopRequest`` is installed when the command starts.  Until the run is about to write its
  first file a SIGTERM ends the process at once (``StopRequested``: exit 0, one line, nothing
  written); from then on it only sets a flag that the loop reads after each iteration: it saves
  and exits 0 (resume with ``--auto_resume``).  In DDP any rank's request stops every rank.
- ``StepGuard`` is attached once to each optimizer through torch's step hooks (the model asks for
  it in ``get_optimizer``, so it runs before any hook the model adds, e.g. gradient clipping).
  Before the step it unscales fp16 gradients (``GradScaler.unscale_``) and checks them: a
  non-finite gradient removes every gradient, so the step changes nothing, and is counted.  After
  the step it checks that the weights are finite.  ``check(iter)`` raises ``TrainingStopped`` after
  ``train.max_bad_steps`` bad steps in a row, or at once when a step made a weight non-finite.
"""
import signal

import torch


class StopRequested(BaseException):  # not an Exception: library code's ``except Exception`` must not eat it
    """SIGTERM before the run wrote anything: exit 0 with this one line."""


class TrainingStopped(RuntimeError):
    """The run cannot usefully continue (e.g. too many non-finite steps); one-line message."""


class StopRequest:
    """SIGTERM handler: raises ``StopRequested`` while nothing is written yet, then sets a flag."""

    def __init__(self):
        self.requested = False
        self.immediate = True
        self._previous = None

    @classmethod
    def install(cls):
        stop = cls()
        stop._previous = signal.signal(signal.SIGTERM, stop._handler)
        return stop

    def uninstall(self):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handler(self, signum, frame):
        self.requested = True
        if self.immediate:
            raise StopRequested('SIGTERM before training started: nothing was written; exiting.')

    def defer(self):
        """From now on a SIGTERM only sets the flag: the loop finishes the iteration and saves."""
        self.immediate = False

    def agreed(self, opt):
        """In DDP every rank must stop at the same iteration: any rank's request stops all."""
        if not opt['dist']:
            return self.requested
        return any_rank(self.requested)


def any_rank(flag):
    """True on every rank when ``flag`` is true on any (a collective: every rank must call it)."""
    import torch.distributed as dist
    value = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == 'nccl':
        value = value.cuda()
    dist.all_reduce(value)
    return value.item() > 0


def _all_finite(tensors):
    tensors = [t for t in tensors if t is not None]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


class StepGuard:
    """Skips optimizer steps whose gradients are not finite; stops on non-finite weights.

    ``skipped`` counts every skipped step, ``consecutive`` the current run of them (a good step
    resets it) and ``bad_since`` the iteration that run started at.  ``scaler``: the fp16
    ``GradScaler`` (its ``unscale_`` / ``update`` run around each step)."""

    def __init__(self, max_bad, logger, skipped=0, scaler=None):
        self.max_bad, self.logger, self.scaler = max_bad, logger, scaler
        self.skipped, self.consecutive, self.bad_since = skipped, 0, None
        self.current_iter = 0
        self.nonfinite_weights = None
        self._skipping = False
        self._attached = []

    def attach(self, optimizer):
        if any(o is optimizer for o in self._attached):
            return
        optimizer.register_step_pre_hook(self._before_step)
        optimizer.register_step_post_hook(self._after_step)
        self._attached.append(optimizer)

    def ensure_attached(self, optimizers, logger):
        """For a model that builds an optimizer without ``get_optimizer``: attach now (after its hooks)."""
        for optimizer in optimizers:
            if not any(o is optimizer for o in self._attached):
                logger.warning(f'{type(optimizer).__name__} was not built by get_optimizer: the non-finite guard '
                               'runs after its other step hooks.')
                self.attach(optimizer)

    @staticmethod
    def _params(optimizer):
        return [p for group in optimizer.param_groups for p in group['params']]

    def _before_step(self, optimizer, args, kwargs):
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        params = self._params(optimizer)
        self._skipping = not _all_finite([p.grad for p in params])
        if not self._skipping:
            self.consecutive, self.bad_since = 0, None
            return
        for p in params:  # optimizers skip parameters without a gradient: the step changes nothing
            p.grad = None
        self.skipped += 1
        self.consecutive += 1
        self.bad_since = self.bad_since or self.current_iter
        scale = f', fp16 loss scale {self.scaler.get_scale():g} backs off' if self.scaler is not None else ''
        self.logger.warning(f'iter {self.current_iter}: non-finite loss or gradient{scale}, step skipped '
                            f'({self.consecutive} in a row, {self.skipped} in total).')

    def _after_step(self, optimizer, args, kwargs):
        if self.scaler is not None:
            self.scaler.update()
        if not self._skipping and not _all_finite(self._params(optimizer)):
            self.nonfinite_weights = self.current_iter

    def last_good(self, saved_iters):
        """The newest saved iteration whose weights were not the ones that produced the current run
        of bad steps (those started at ``bad_since``: the weights of ``bad_since - 1`` made them)."""
        limit = self.bad_since - 1 if self.bad_since else self.current_iter
        good = [it for it in saved_iters if it < limit]
        return max(good) if good else None

    def check(self, current_iter, saved_iters, models_dir, lr):
        """Raise ``TrainingStopped`` if the run cannot continue."""
        if self.nonfinite_weights is None and not (self.max_bad > 0 and self.consecutive >= self.max_bad):
            return
        if self.nonfinite_weights is not None:
            what = (f'the optimizer step made weights non-finite (inf or NaN) although the gradients were finite '
                    f'(learning rate {lr:g}); nothing of this iteration was saved')
            good = max(saved_iters) if saved_iters else None
        else:
            what = (f'{self.consecutive} consecutive steps had a non-finite loss or gradient '
                    f'(train.max_bad_steps={self.max_bad}; {self.skipped} skipped in all)')
            good = self.last_good(saved_iters)
        advice = 'Lower the learning rate, check the data, or train in fp32'
        if good is None:
            raise TrainingStopped(f'stopped at iter {current_iter}: {what}; no checkpoint of this run holds good '
                                  f'weights. {advice}, then start again.')
        kept = f'the last good checkpoint is iter {good} in {models_dir}'
        if self.bad_since and good < max(saved_iters):
            kept += f' (iter {self.bad_since - 1} holds the weights that gave the non-finite steps)'
        raise TrainingStopped(f'stopped at iter {current_iter}: {what}; {kept}. {advice}, then resume from it '
                              f'(--force_yml path:resume_state=<training_states/{good}.state>).')


class GuardedSteps:
    """Mixin for a BasicSR model: every optimizer it builds (``get_optimizer``) gets ``step_guard``'s
    hooks before the model adds its own (e.g. gradient clipping, which must see unscaled gradients)."""

    step_guard = None  # set on the subclass the loop builds

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        optimizer = super().get_optimizer(optim_type, params, lr, **kwargs)
        self.step_guard.attach(optimizer)
        return optimizer

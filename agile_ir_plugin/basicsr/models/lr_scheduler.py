"""Learning-rate schedules that BasicSR 1.4.2 lacks.

``CosineAnnealingRestartCyclicLR`` is Restormer's schedule (Zamir et al., "Restormer: Efficient
Transformer for High-Resolution Image Restoration", CVPR 2022; official recipe: periods
[92000, 208000], restart_weights [1, 1], eta_mins [3e-4, 1e-6], i.e. a constant 3e-4 for 92k
iterations, then a cosine from 3e-4 down to 1e-6 over 208k).  It is BasicSR's
``CosineAnnealingRestartLR`` with one floor per cycle.  Written from the defining formula:

    with cycles of lengths P_0, P_1, ... and cumulative ends E_i = P_0 + ... + P_i,
    the cycle of step t is the first i with t <= E_i, starting at R_i = E_{i-1} (R_0 = 0), and

        lr(t) = eta_min_i + w_i * 0.5 * (base_lr - eta_min_i) * (1 + cos(pi * (t - R_i) / P_i)).

Past the last cycle the schedule stays at its final value (the official code raises there).

Models pick schedulers by name through :func:`build_scheduler`, which falls back to BasicSR's own
ones; :data:`SCHEDULERS` lists the names added here.
"""
import math

from torch.optim import lr_scheduler as _torch_sched

_BaseScheduler = getattr(_torch_sched, 'LRScheduler', None) or _torch_sched._LRScheduler

__all__ = ['CosineAnnealingRestartCyclicLR', 'SCHEDULERS', 'build_scheduler']


class CosineAnnealingRestartCyclicLR(_BaseScheduler):
    """Cosine annealing with restarts, each cycle with its own floor ``eta_mins[i]``.

    Args:
        optimizer (torch.optim.Optimizer): wrapped optimizer.
        periods (list[int]): length of each cosine cycle, in scheduler steps (iterations).
        restart_weights (list[float]): scale of the cosine amplitude in each cycle. Default: [1].
        eta_mins (list[float]): the lr each cycle anneals to. Default: [0].
        last_epoch (int): index of the last step (-1 starts fresh). Default: -1.
    """

    def __init__(self, optimizer, periods, restart_weights=(1, ), eta_mins=(0, ), last_epoch=-1):
        periods = [int(p) for p in periods]
        restart_weights = [float(w) for w in restart_weights]
        eta_mins = [float(e) for e in eta_mins]
        if not (len(periods) == len(restart_weights) == len(eta_mins)):
            raise ValueError(f'CosineAnnealingRestartCyclicLR: periods ({len(periods)}), restart_weights '
                             f'({len(restart_weights)}) and eta_mins ({len(eta_mins)}) need one entry per cycle')
        if not periods or min(periods) <= 0:
            raise ValueError(f'CosineAnnealingRestartCyclicLR: periods must be positive, got {periods}')
        # plain lists and floats only: the state dict must load with torch.load(weights_only=True)
        self.periods = periods
        self.restart_weights = restart_weights
        self.eta_mins = eta_mins
        self.cumulative_period = [sum(periods[:i + 1]) for i in range(len(periods))]
        super().__init__(optimizer, last_epoch)

    def _cycle(self, step):
        """(cycle index, steps into the cycle) for scheduler step ``step``, clamped to the last cycle's end."""
        for i, end in enumerate(self.cumulative_period):
            if step <= end:
                start = end - self.periods[i]
                return i, step - start
        return len(self.periods) - 1, self.periods[-1]

    def get_lr(self):
        i, t = self._cycle(self.last_epoch)
        eta_min, weight, period = self.eta_mins[i], self.restart_weights[i], self.periods[i]
        cosine = 0.5 * (1 + math.cos(math.pi * t / period))
        return [eta_min + weight * (base_lr - eta_min) * cosine for base_lr in self.base_lrs]


SCHEDULERS = {'CosineAnnealingRestartCyclicLR': CosineAnnealingRestartCyclicLR}


def build_scheduler(optimizer, scheduler_opt):
    """Scheduler named by ``scheduler_opt['type']``: one of :data:`SCHEDULERS`, else ``None`` (the
    caller then uses BasicSR's own ``setup_schedulers``).  ``scheduler_opt`` is not modified."""
    kwargs = dict(scheduler_opt)
    cls = SCHEDULERS.get(kwargs.pop('type', None))
    return None if cls is None else cls(optimizer, **kwargs)

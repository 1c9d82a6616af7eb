"""What a person watching a training run sees: log lines, a progress bar, the history of the run.

``Progress`` logs BasicSR's line (``[name..][epoch:  0, iter:  1,000, lr:(...)] [eta: ..., time
(data): ...] l_pix: ...``) after the first iteration of a run (whatever ``print_freq``: its time
says how long the run will take), every ``logger.print_freq`` iterations and after the last one.
The ETA is the mean time of this run's iterations after the first (which carries the start-up)
times the iterations left: 0 at the end, never negative (BasicSR's counts one iteration too many
and ends at ``-1 day, 23:59:38``).  When stderr is a terminal a tqdm bar shows the iterations and
the log lines are printed above it.  ``History`` keeps every iteration's losses and every
validation's metrics for the closing summary and the curve plot.
"""
import contextlib
import datetime
import os
import sys
import time


@contextlib.contextmanager
def run_log_file(logger, log_file, rank):
    """This run's log file on BasicSR's logger, also when the process set that logger up before
    (BasicSR's ``get_root_logger`` configures it once per process: a second in-process run would
    log INFO nowhere, or into the first run's file).  Removed again at the end of the run."""
    import logging
    path = os.path.abspath(log_file)
    ours = None
    if rank == 0 and not any(getattr(h, 'baseFilename', None) == path for h in logger.handlers):
        ours = logging.FileHandler(path, 'w')
        ours.setFormatter(logging.Formatter('%(asctime)s %(levelname)s: %(message)s'))
        logger.addHandler(ours)
    level = logger.level
    if rank == 0 and logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield logger
    finally:
        if ours is not None:
            logger.removeHandler(ours)
            ours.close()
        logger.setLevel(level)


class History:
    """``losses``: [(iter, {name: value})]; ``validations``: [(iter, dataset, {metric: value})]."""

    def __init__(self):
        self.losses, self.validations = [], []

    def add_losses(self, current_iter, log):
        self.losses.append((current_iter, {k: float(v) for k, v in log.items()}))

    def add_validation(self, current_iter, dataset, metrics):
        self.validations.append((current_iter, dataset, {k: float(v) for k, v in metrics.items()}))

    def last_validation(self, dataset):
        found = [v for v in self.validations if v[1] == dataset]
        return found[-1] if found else None


def _duration(seconds):
    return str(datetime.timedelta(seconds=int(round(max(seconds, 0)))))


class Progress(contextlib.AbstractContextManager):
    """Timing, log lines, TensorBoard scalars and the bar of the training loop (rank 0 shows a bar)."""

    def __init__(self, opt, start_iter, total_iters, logger, tb_logger=None, stream=None):
        self.name, self.print_freq = opt['name'], int(opt['logger']['print_freq'])
        self.start_iter, self.total = start_iter, total_iters
        self.logger, self.tb_logger = logger, tb_logger
        self.history = History()
        self.started = time.time()
        self._first_done = None  # time the first iteration of this run ended
        self._iter_start = self._data_end = time.perf_counter()
        self._iter_times, self._data_times = [], []
        stream = sys.stderr if stream is None else stream
        self.bar = None
        if opt.get('rank', 0) == 0 and getattr(stream, 'isatty', lambda: False)():
            from tqdm import tqdm
            self.bar = tqdm(total=total_iters, initial=start_iter, unit='iter', file=stream, dynamic_ncols=True)
        self._redirect = None

    def __enter__(self):
        if self.bar is not None:
            from tqdm.contrib.logging import logging_redirect_tqdm
            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()
        return self

    def __exit__(self, *exc):
        if self._redirect is not None:
            self._redirect.__exit__(*exc)
        if self.bar is not None:
            self.bar.close()
        return False

    def data_loaded(self):
        self._data_end = time.perf_counter()

    def eta_seconds(self, current_iter):
        left = self.total - current_iter
        done_after_first = current_iter - self.start_iter - 1
        if left <= 0 or not self._iter_times:
            return 0.0
        if done_after_first > 0:
            return (time.time() - self._first_done) / done_after_first * left
        return self._iter_times[0] * left

    def iteration_done(self, epoch, current_iter, model):
        now = time.perf_counter()
        self._iter_times.append(now - self._iter_start)
        self._data_times.append(self._data_end - self._iter_start)
        if self._first_done is None:
            self._first_done = time.time()
        log = model.get_current_log()
        self.history.add_losses(current_iter, log)
        if self.bar is not None:
            self.bar.update(1)
            if log:
                self.bar.set_postfix({k: f'{v:.4g}' for k, v in log.items()}, refresh=False)
        first = current_iter == self.start_iter + 1
        if first or current_iter % self.print_freq == 0 or current_iter == self.total:
            self._log_line(epoch, current_iter, model.get_current_learning_rate(), log, first)

    def iter_start(self):
        """The next iteration starts (saving and validation are not part of an iteration's time)."""
        self._iter_start = time.perf_counter()

    def _log_line(self, epoch, current_iter, lrs, log, first):
        window = self._iter_times[1:] if len(self._iter_times) > 1 else self._iter_times
        data_window = self._data_times[1:] if len(self._data_times) > 1 else self._data_times
        iter_time, data_time = sum(window) / len(window), sum(data_window) / len(data_window)
        message = f'[{self.name[:5]}..][epoch:{epoch:3d}, iter:{current_iter:8,d}, lr:('
        message += ''.join(f'{v:.3e},' for v in lrs) + ')] '
        eta = _duration(self.eta_seconds(current_iter))
        message += f'[eta: {eta}, time (data): {iter_time:.3f} ({data_time:.3f})] '
        message += ''.join(f'{k}: {v:.4e} ' for k, v in log.items())
        if first:
            message += f'(first iteration of this run: {self._iter_times[0]:.2f} s)'
        self.logger.info(message.rstrip())
        if self.tb_logger is not None:
            for k, v in log.items():
                self.tb_logger.add_scalar(f'losses/{k}' if k.startswith('l_') else k, v, current_iter)

    def validated(self, current_iter, model, dataset):
        """Record the metrics ``model.validation`` just computed (BasicSR keeps them on the model)."""
        metrics = getattr(model, 'metric_results', None)
        if metrics:
            self.history.add_validation(current_iter, dataset, metrics)

    def wall_time(self):
        return _duration(time.time() - self.started)

"""Fault injection for the crash tests: the one test seam of the training path.

The loop and the checkpoint writer receive a ``FaultInjector`` and call it at the places a test may
want to kill the process; the default (``AGILE_IR_STALL_AT`` unset) does nothing but write.
``AGILE_IR_STALL_AT=<point>[@<iter>]`` makes the process announce ``AGILE_IR_STALLED <point> <iter>``
on stderr and sleep there (``AGILE_IR_STALL_SECONDS``, default 30) so a test can SIGKILL or SIGTERM
it at a known place.  Pure python: no torch, nothing patched.
"""
import os
import sys
import time

#: Where a run can stall, in the order they are reached in an iteration that saves.
STALL_POINTS = (
    'after_step',            # the optimizer step is done, nothing of this iteration saved yet
    'inside_weights_write',  # half of a net_*.pth written (in the staging folder)
    'before_state_write',    # every weights file verified in the staging folder, the .state not yet
    'inside_state_write',    # half of the .state written (in the staging folder)
    'between_renames',       # weights renamed into models/, the .state not yet published
    'after_state_rename',    # checkpoint complete, staging folder not yet removed
)


class FaultInjector:
    """``reached(point, iter)`` stalls when asked to; ``write(f, data, point, iter)`` writes ``data``
    to the open file ``f``, and when asked to stall at ``point`` writes half of it first (flushed and
    fsynced, so a kill leaves a truncated file on disk) and stalls there."""

    def __init__(self, point=None, at=None, seconds=30.0):
        if point is not None and point not in STALL_POINTS:
            raise ValueError(f'AGILE_IR_STALL_AT: unknown point {point!r}; one of {", ".join(STALL_POINTS)}')
        self.point, self.at, self.seconds = point, at, seconds

    @classmethod
    def from_env(cls, environ=None):
        environ = os.environ if environ is None else environ
        spec = environ.get('AGILE_IR_STALL_AT')
        if not spec:
            return cls()
        point, _, at = spec.partition('@')
        return cls(point, int(at) if at else None, float(environ.get('AGILE_IR_STALL_SECONDS', '30')))

    def _requested(self, point, current_iter):
        return self.point == point and (self.at is None or self.at == current_iter)

    def reached(self, point, current_iter):
        if self._requested(point, current_iter):
            sys.stderr.write(f'AGILE_IR_STALLED {point} {current_iter}\n')
            sys.stderr.flush()
            time.sleep(self.seconds)

    def write(self, f, data, point, current_iter):
        if self._requested(point, current_iter):
            f.write(data[:len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            self.reached(point, current_iter)
            f.seek(0)
        f.write(data)

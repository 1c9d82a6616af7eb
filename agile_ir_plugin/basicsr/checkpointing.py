"""Checkpoints that are published only when complete, and the choice of the state to resume from.

BasicSR's ``save_network`` / ``save_training_state`` write straight to the final path, retry three
times and then log ``Still cannot save ... Just ignore it.``: a full disk leaves a truncated
``net_g_N.pth`` next to a complete ``N.state`` and the run goes on (exit code 0).  Here:

- ``VerifiedSaves`` is a mixin for any BasicSR model class (``build_training_model`` puts it in
  front of the class ``model_type`` names).  Its ``save_network`` / ``save_training_state`` hand
  the object to a ``CheckpointWriter`` instead of calling ``torch.save`` on the final path.
- ``CheckpointWriter.checkpoint(iter)`` is one save: every file is serialized, written into the
  staging folder ``<experiment>/.saving_<iter>``, fsynced and verified (its size on disk and a
  ``weights_only`` load); only when all of them are verified are they renamed into ``models/`` and
  ``training_states/``, the ``.state`` last, so a state on disk implies complete weights.  A failure
  removes the staging folder and raises ``CheckpointWriteError`` (one line): the caller stops the run
  with a non-zero exit.  "Saved" is logged by the caller only after ``checkpoint()`` returned.
- ``find_resume_state`` picks the explicit ``path.resume_state`` or, with ``--auto_resume``, the
  newest state whose weights load; if states exist and none is usable it raises ``ResumeError``
  listing each one and why (``start_fresh=True``, the CLI's ``--start_fresh``, starts from iteration
  0 instead).
"""
import contextlib
import io
import os
import shutil
from os import path as osp

import torch

from ..checkpoint import CheckpointError, load_checkpoint
from .faults import FaultInjector

STATE_KEY = 'agile_ir'  # our additions inside a BasicSR training state


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written completely; nothing of it was published."""


class ResumeError(RuntimeError):
    """``--auto_resume`` found training states but none it can use; ``lines`` says why for each."""

    def __init__(self, summary, lines):
        super().__init__('\n'.join([summary, *lines]))
        self.summary, self.lines = summary, lines


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _why(err):
    return getattr(err, 'strerror', None) or ' '.join(str(err).split()) or type(err).__name__


class CheckpointWriter:
    """Writes the files of one checkpoint into a staging folder, verifies each, then publishes them."""

    def __init__(self, experiments_root, faults=None):
        self.root = experiments_root
        self.faults = faults or FaultInjector()
        self.extra = None  # our resume info, added to the training state being written
        self._stage = self._iter = None
        self._pending = []

    @contextlib.contextmanager
    def checkpoint(self, current_iter, extra=None):
        """One save: every ``write`` inside the block is staged and verified; when the block ends
        without error the files are published (``self.published``: their paths, weights first) and
        the staging folder removed.  Any error removes the staging folder and propagates."""
        tag = 'latest' if current_iter == -1 else current_iter
        stage = osp.join(self.root, f'.saving_{tag}')
        shutil.rmtree(stage, ignore_errors=True)
        try:
            os.makedirs(stage)
        except OSError as err:
            raise CheckpointWriteError(f'cannot save the checkpoint of iter {tag}: cannot create {stage} '
                                       f'({_why(err)}); is {self.root} writable?') from None
        self._stage, self._iter, self._pending, self.extra = stage, current_iter, [], extra
        self.published = []
        try:
            yield self
            self._publish(tag)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        finally:
            self._stage = self.extra = None
        self.faults.reached('after_state_rename', current_iter)
        shutil.rmtree(stage, ignore_errors=True)

    def write(self, obj, dest):
        """Serialize ``obj``, write it into the staging folder and verify it; published later."""
        if self._stage is None:
            raise RuntimeError('CheckpointWriter.write outside checkpoint(): call model.save inside it')
        name = osp.basename(dest)
        is_state = name.endswith('.state')
        if is_state:
            self.faults.reached('before_state_write', self._iter)
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        data = buffer.getvalue()
        staged = osp.join(self._stage, name)
        try:
            with open(staged, 'wb') as f:
                self.faults.write(f, data, 'inside_state_write' if is_state else 'inside_weights_write', self._iter)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise CheckpointWriteError(f'cannot save {name} ({len(data):,} bytes) into {self._stage}: {_why(err)}; '
                                       'nothing of this checkpoint was published, the older ones are untouched.'
                                       ) from None
        self._verify(staged, len(data))
        self._pending.append((staged, dest, is_state))

    def _verify(self, staged, size):
        on_disk = osp.getsize(staged)
        if on_disk != size:
            raise CheckpointWriteError(f'{staged} has {on_disk:,} of {size:,} bytes after writing; not published.')
        try:
            load_checkpoint(staged)  # weights_only=True
        except CheckpointError as err:
            raise CheckpointWriteError(f'{staged} does not load back after writing ({err}); not published.') from None

    def _publish(self, tag):
        """Rename the verified files into place: the weights, then the state (its presence means the
        weights of its iteration are complete)."""
        for is_state in (False, True):
            if is_state:
                self.faults.reached('between_renames', self._iter)
            group = [(staged, dest) for staged, dest, state in self._pending if state == is_state]
            for staged, dest in group:
                try:
                    os.replace(staged, dest)
                except OSError as err:
                    raise CheckpointWriteError(f'cannot publish {osp.basename(dest)} of iter {tag} into '
                                               f'{osp.dirname(dest)}: {_why(err)}.') from None
                self.published.append(dest)
            for folder in sorted({osp.dirname(dest) for _, dest in group}):
                _fsync_dir(folder)


def _bare_state_dict(net):
    return {(k[7:] if k.startswith('module.') else k): v.cpu() for k, v in net.state_dict().items()}


class VerifiedSaves:
    """Mixin for a BasicSR model: ``save_network`` / ``save_training_state`` (what ``model.save``
    calls) go through ``self.checkpoint_writer`` instead of ``torch.save`` on the final path.
    The files have BasicSR's names and contents (plus our resume info under ``STATE_KEY``)."""

    checkpoint_writer = None  # set on the subclass built by ``build_training_model``

    def save_network(self, net, net_label, current_iter, param_key='params'):
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        if len(nets) != len(keys):
            raise ValueError(f'save_network: {len(nets)} networks but {len(keys)} param keys')
        tag = 'latest' if current_iter == -1 else current_iter
        save_dict = {key: _bare_state_dict(self.get_bare_model(n)) for n, key in zip(nets, keys)}
        self.checkpoint_writer.write(save_dict, osp.join(self.opt['path']['models'], f'{net_label}_{tag}.pth'))

    def save_training_state(self, epoch, current_iter):
        if current_iter == -1:
            return
        state = {'epoch': epoch, 'iter': current_iter,
                 'optimizers': [o.state_dict() for o in self.optimizers],
                 'schedulers': [s.state_dict() for s in self.schedulers]}
        if self.checkpoint_writer.extra is not None:
            state[STATE_KEY] = self.checkpoint_writer.extra
        self.checkpoint_writer.write(state, osp.join(self.opt['path']['training_states'], f'{current_iter}.state'))


def network_names(opt):
    return [key.replace('network_', '') for key in opt if key.startswith('network_')]


def remove_stale_staging(opt, notes):
    """Staging folders left by a save that was killed hold nothing a complete checkpoint lacks."""
    root = opt['path']['experiments_root']
    if opt['rank'] != 0 or not osp.isdir(root):
        return
    for name in sorted(os.listdir(root)):
        if name.startswith('.saving_'):
            shutil.rmtree(osp.join(root, name), ignore_errors=True)
            notes.append(('info', f'Removed {name} in {root}: the staging folder of an interrupted save.'))


def verify_state(opt, state_path):
    """Load ``state_path`` and check its networks' weight files load; returns the state or raises."""
    state = load_checkpoint(state_path)
    if not isinstance(state, dict):
        raise CheckpointError(f'{state_path} is not a BasicSR training state (a {type(state).__name__}, not a dict)')
    for key in ('epoch', 'iter', 'optimizers', 'schedulers'):
        if key not in state:
            raise CheckpointError(f'{state_path} is not a BasicSR training state (no {key!r} key)')
    for name in network_names(opt):
        load_checkpoint(osp.join(opt['path']['models'], f"net_{name}_{state['iter']}.pth"))
    return state


def find_resume_state(opt, notes, start_fresh=False):
    """``(path, state)`` to resume from, or ``(None, None)`` to start from iteration 0.

    ``path.resume_state`` if set (without ``--auto_resume``); with ``--auto_resume`` the newest state
    in this experiment's ``training_states`` whose weights load.  No experiment or no state at all:
    start fresh (as BasicSR).  States that are all unusable: ``ResumeError`` listing each and why,
    unless ``start_fresh``."""
    explicit = opt['path'].get('resume_state')
    if explicit and not opt['auto_resume']:
        return explicit, verify_state(opt, explicit)
    if not opt['auto_resume']:
        return None, None
    states_dir = opt['path']['training_states']
    candidates = sorted((int(f[:-6]) for f in (os.listdir(states_dir) if osp.isdir(states_dir) else [])
                         if f.endswith('.state') and f[:-6].isdigit()), reverse=True)
    refused = []
    for it in candidates:
        path = osp.join(states_dir, f'{it}.state')
        try:
            state = verify_state(opt, path)
        except CheckpointError as err:  # incomplete or corrupt: fall back to an older complete one
            notes.append(('warning', f'Auto-resume: skipping {path}: {err}'))
            refused.append(f'{it}.state: {err}')
            continue
        notes.append(('info', f'Auto-resume: using {path} (newest complete state and weights).'))
        return path, state
    if refused and not start_fresh:
        raise ResumeError(f'--auto_resume: none of the {len(refused)} training state(s) in {states_dir} can be '
                          'used (each is listed below); fix or remove them, or pass --start_fresh to archive '
                          'this experiment and start from iteration 0.', refused)
    if refused:
        notes.append(('warning', f'--start_fresh: none of the {len(refused)} state(s) in {states_dir} is usable; '
                                 'starting from iteration 0 (the old experiment is archived).'))
    return None, None

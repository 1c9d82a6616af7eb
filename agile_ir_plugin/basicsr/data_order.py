"""Data order and randomness that survive a restart (BasicSR restarts the epoch and reseeds its
workers from scratch; here a run stopped at any iteration and resumed sees the same batches).

- ``ResumableSampler``: BasicSR's ``EnlargedSampler`` order that can skip the samples an epoch has
  already consumed and yields ``epoch * total_size + position``.
- ``SeededSamples``: loads each sample with the RNGs seeded by ``(manual_seed, epoch, position)``,
  so augmentation does not depend on which process or worker loads it.
- ``get_rng_states`` / ``set_rng_states``: the model's RNG states as plain tensors (so a training
  state loads with ``weights_only=True``).
- ``create_train_val_dataloader`` / ``make_prefetcher``: BasicSR's, with the sampler above.
"""
import random

import numpy as np
import torch
from torch.utils.data import Dataset

from .preflight import InputError


def _sampler_base():
    from basicsr.data.data_sampler import EnlargedSampler
    return EnlargedSampler


class ResumableSampler(_sampler_base()):
    """BasicSR's ``EnlargedSampler`` order (``randperm(total_size)`` seeded by the epoch, sliced by
    rank) that can skip the samples already consumed in an epoch, and that yields
    ``epoch * total_size + position`` so the dataset can seed each sample deterministically."""

    def __init__(self, dataset, num_replicas, rank, ratio=1):
        super().__init__(dataset, num_replicas, rank, ratio)
        self.skip = 0

    def set_epoch(self, epoch, skip=0):
        super().set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.epoch)
        positions = torch.randperm(self.total_size, generator=g).tolist()
        positions = positions[self.rank:self.total_size:self.num_replicas]
        skip, self.skip = self.skip, 0
        offset = self.epoch * self.total_size
        return iter([offset + p for p in positions[skip:]])


class SeededSamples(Dataset):
    """Wraps a dataset so that item ``epoch * total_size + position`` is ``dataset[position % len]``
    loaded with ``random``, ``numpy`` and torch's CPU RNG seeded from ``(seed, epoch, position)``.
    The caller's RNG states are restored afterwards, so the model's randomness is untouched."""

    def __init__(self, dataset, seed, total_size):
        self.dataset, self.seed, self.total_size = dataset, int(seed), int(total_size)

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):  # datasets expose opt, paths, ... that loggers may read
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, code):
        epoch, position = divmod(int(code), self.total_size)
        sample_seed = int(np.random.SeedSequence([self.seed, epoch, position]).generate_state(1)[0])
        py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
        index = position % len(self.dataset)
        try:
            random.seed(sample_seed)
            np.random.seed(sample_seed)
            torch.default_generator.manual_seed(sample_seed)
            return self.dataset[index]
        except Exception as err:  # name the file: BasicSR says e.g. "'NoneType' has no attribute 'astype'"
            paths = getattr(self.dataset, 'paths', None)
            files = paths[index] if isinstance(paths, (list, tuple)) and index < len(paths) else f'sample {index}'
            if isinstance(files, dict):
                files = ', '.join(str(v) for v in files.values())
            raise InputError(f'{files}: could not be loaded as a training sample ({type(err).__name__}: '
                             f'{str(err).strip().splitlines()[0] if str(err).strip() else "no message"}); '
                             'check or remove the file.') from err
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.set_rng_state(torch_state)


def get_rng_states():
    np_state = np.random.get_state()
    states = {
        'python': random.getstate(),
        'numpy': [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states):
    random.setstate(_to_tuple(states['python']))
    name, keys, pos, has_gauss, cached = states['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def create_train_val_dataloader(opt, logger):
    from basicsr.data import build_dataloader, build_dataset
    train_loader = sampler = None
    val_loaders = []
    for phase, dataset_opt in opt['datasets'].items():
        if phase == 'train':
            ratio = dataset_opt.get('dataset_enlarge_ratio', 1)
            train_set = build_dataset(dataset_opt)
            sampler = ResumableSampler(train_set, opt['world_size'], opt['rank'], ratio)
            seeded = SeededSamples(train_set, opt['manual_seed'], sampler.total_size)
            train_loader = build_dataloader(seeded, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                                            sampler=sampler, seed=opt['manual_seed'])
            # the loader's own base-seed draws must not consume the global RNG the model uses
            train_loader.generator = torch.Generator().manual_seed(opt['manual_seed'])
            iters_per_epoch = sampler.num_samples // dataset_opt['batch_size_per_gpu']
            if iters_per_epoch == 0:
                raise InputError(f"datasets.train: {len(train_set)} images x enlarge ratio {ratio} over "
                                 f"{opt['world_size']} process(es) is fewer than batch_size_per_gpu="
                                 f"{dataset_opt['batch_size_per_gpu']}: lower the batch size or raise "
                                 'dataset_enlarge_ratio.')
            logger.info(f"Training statistics:\n\tNumber of train images: {len(train_set)}"
                        f"\n\tDataset enlarge ratio: {ratio}\n\tBatch size per gpu: {dataset_opt['batch_size_per_gpu']}"
                        f"\n\tWorld size (gpu number): {opt['world_size']}\n\tIters per epoch: {iters_per_epoch}"
                        f"\n\tTotal iters: {int(opt['train']['total_iter'])}.")
        elif phase.split('_')[0] == 'val':
            val_set = build_dataset(dataset_opt)
            val_loaders.append(build_dataloader(val_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                                                sampler=None, seed=opt['manual_seed']))
            logger.info(f'Number of val images/folders in {dataset_opt["name"]}: {len(val_set)}')
        else:
            raise InputError(f"datasets.{phase}: unknown phase (expected 'train' or 'val*').")
    if train_loader is None:
        raise InputError("The options have no 'datasets: train:' section.")
    return train_loader, sampler, val_loaders, iters_per_epoch


def make_prefetcher(loader, opt):
    from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
    mode = opt['datasets']['train'].get('prefetch_mode')
    if mode in (None, 'cpu'):
        return CPUPrefetcher(loader)
    if mode == 'cuda':
        if opt['datasets']['train'].get('pin_memory') is not True:
            raise ValueError('Please set pin_memory=True for CUDAPrefetcher.')
        return CUDAPrefetcher(loader, opt)
    raise ValueError(f"Wrong prefetch_mode {mode}. Supported ones are: None, 'cuda', 'cpu'.")

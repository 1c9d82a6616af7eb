"""The option keys BasicSR 1.4.2 and this plugin read, declared per section (no imports).

The preflight checks every key of an options file against this schema: an unknown key close to a
valid one (``use_hflp`` -> ``use_hflip``) is an error naming it; an unknown key with no close
match is a warning (a user's own component may read it).  ``tests/basicsr/test_option_schema.py``
checks the declaration against BasicSR's source (each declared BasicSR key is read there) and the
repository's recipes (each of their keys is declared), so the schema cannot drift silently.

Typed sub-sections (``network_*``, ``train.optim_*``, ``train.scheduler``, losses, metrics) are checked
against the signature of the class they build, not here.  Add keys a new component reads with
:func:`declare`.
"""

SCHEMA = {
    # basicsr/utils/options.py, basicsr/train.py, basicsr/test.py, basicsr/models/*
    'top': {'name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'is_train', 'dist', 'rank', 'world_size',
            'auto_resume', 'root_path', 'datasets', 'path', 'train', 'val', 'logger', 'dist_params',
            'find_unused_parameters'},
    # basicsr/data/*.py (every dataset class) and basicsr/data/__init__.py (the dataloader)
    'dataset': {'name', 'type', 'phase', 'scale', 'dataroot_gt', 'dataroot_lq', 'dataroot_flow', 'meta_info_file',
                'filename_tmpl', 'io_backend', 'gt_size', 'use_hflip', 'use_rot', 'mean', 'std',
                'color', 'num_worker_per_gpu', 'batch_size_per_gpu', 'dataset_enlarge_ratio', 'prefetch_mode',
                'num_prefetch_queue', 'pin_memory', 'persistent_workers', 'cache_data', 'num_frame',
                'interval_list', 'random_reverse', 'val_partition', 'test_mode', 'padding', 'flip_sequence',
                'use_duf_downsampling', 'blur_kernel_size', 'kernel_list', 'kernel_prob', 'blur_sigma',
                'betag_range', 'betap_range', 'sinc_prob', 'blur_kernel_size2', 'kernel_list2', 'kernel_prob2',
                'blur_sigma2', 'betag_range2', 'betap_range2', 'sinc_prob2', 'final_sinc_prob'},
    'io_backend': {'type', 'db_paths', 'client_keys'},
    # BaseModel.load_network / resume (suffix _g, _d, ... per network)
    'path': {'resume_state', 'experiments_root', 'models', 'training_states', 'log', 'visualization',
             'results_root', 'ignore_resume_networks'},
    'path_prefixes': {'pretrain_network_', 'strict_load_', 'param_key_'},
    'train': {'total_iter', 'warmup_iter', 'ema_decay', 'scheduler', 'net_d_iters', 'net_d_init_iters',
              'fix_flow', 'flow_lr_mul', 'dcn_lr_mul', 'tsa_iter', 'gan_gt_usm', 'l1_gt_usm',
              'percep_gt_usm', 'r1_reg_weight', 'path_reg_weight', 'net_g_reg_every', 'net_d_reg_every',
              'mixing_prob', 'path_batch_shrink'},
    'train_suffixes': {'_opt'},  # pixel_opt, perceptual_opt, gan_opt, ...: typed loss sections
    'train_prefixes': {'optim_'},
    'val': {'val_freq', 'save_img', 'suffix', 'metrics', 'pbar', 'window_size', 'num_val_samples'},
    'logger': {'print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb'},
    'wandb': {'project', 'resume_id'},
}

# this plugin's additions (each read by the module named)
PLUGIN = {
    'top': set(),
    'dataset': {'preflight',  # basicsr/preflight_data.py: skip the data checks of this dataset
                'split',  # data/embedded_dataset.py
                'mat_key', 'rgb_norm', 'bgr2rgb', 'stride', 'use_flip',  # data/hsi_dataset.py
                'gt_sizes', 'iters', 'mini_batch_sizes'},  # models/image_restoration_model.py (progressive)
    'path': set(),
    # train.resize_pretrain_<net>: true asks for a checkpoint of another scale to be resized (ESC x2 -> x4;
    # basicsr/pretrained.py).  Not under path: BasicSR's make_exp_dirs makes a folder of every path value
    # it does not know (TypeError on a bool) and parse_options expanduser()s pretrain_network* keys.
    'train_net_prefixes': {'resize_pretrain_'},
    'train': {'amp', 'max_bad_steps',  # the trainer's precision and non-finite guards
              'grad_clip_norm', 'use_grad_clip'},  # models/image_restoration_model.py
    'val': set(),
    'logger': set(),
    # compat.init_dist pops these; the rest of dist_params goes to torch.distributed.init_process_group,
    # whose keyword arguments the preflight reads from its signature
    'dist_params': {'backend', 'port'},
}


# keys BasicSR's own option templates carry but BasicSR 1.4.2 no longer reads: accepted without a word
# (use_shuffle: the EnlargedSampler shuffles every training set)
LEGACY = {'dataset': {'use_shuffle'}}


def declare(section, *keys):
    """Declare option keys a new component reads (``declare('train', 'my_key')``)."""
    PLUGIN.setdefault(section, set()).update(keys)


def valid_keys(section):
    return SCHEMA.get(section, set()) | PLUGIN.get(section, set()) | LEGACY.get(section, set())

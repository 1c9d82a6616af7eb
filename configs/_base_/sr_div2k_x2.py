# x2 bicubic super-resolution data: DIV2K for training, Set5 for validation, the five standard
# benchmarks for testing; scored like the BasicSR options (PSNR/SSIM on Y, border = scale).
# Layout (edit `data_root`): datasets/DIV2K/DIV2K_train_HR/0001.png,
# datasets/DIV2K/DIV2K_train_LR_bicubic/X2/0001x2.png, datasets/benchmark/Set5/HR/baby.png,
# datasets/benchmark/Set5/LR_bicubic/X2/babyx2.png (the layout of ../shared/data).
# One file per scale, as MMagic's own sisr_x{2,3,4}_test_config.py: an mmengine Python config drops
# its base's functions and imports only builtin modules, so the scale-dependent lists are spelled out.
scale = 2
gt_patch_size = 128  # LR patch 64
data_root = 'datasets'

data_preprocessor = dict(type='DataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.])

_load = [
    dict(type='LoadImageFromFile', key='img', color_type='color', channel_order='rgb',
         imdecode_backend='cv2'),
    dict(type='LoadImageFromFile', key='gt', color_type='color', channel_order='rgb',
         imdecode_backend='cv2'),
]
train_pipeline = _load + [
    dict(type='SetValues', dictionary=dict(scale=scale)),
    dict(type='PairedRandomCrop', gt_patch_size=gt_patch_size),
    dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5, direction='horizontal'),
    dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5, direction='vertical'),
    dict(type='RandomTransposeHW', keys=['img', 'gt'], transpose_ratio=0.5),
    dict(type='PackInputs'),
]
# HR images whose size is no multiple of the scale (B100: 321x481) are cropped to LR size x scale,
# as BasicSR's PairedImageDataset does when testing
val_pipeline = _load + [dict(type='SetValues', dictionary=dict(scale=scale)), dict(type='ModCrop', key='gt'),
                        dict(type='PackInputs')]

train_dataloader = dict(
    num_workers=8,
    batch_size=16,  # per GPU; the recipes' global batch is 64 (4 GPUs)
    drop_last=True,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='BasicImageDataset',
        metainfo=dict(dataset_type='div2k', task_name='sisr'),
        data_root=data_root + '/DIV2K',
        data_prefix=dict(img='DIV2K_train_LR_bicubic/X2', gt='DIV2K_train_HR'),
        filename_tmpl=dict(img='{}x2', gt='{}'),
        search_key='gt',
        pipeline=train_pipeline))


def _benchmark(name):
    return dict(
        num_workers=2,
        persistent_workers=False,
        drop_last=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            type='BasicImageDataset',
            metainfo=dict(dataset_type=name.lower(), task_name='sisr'),
            data_root=f'{data_root}/benchmark/{name}',
            data_prefix=dict(img='LR_bicubic/X2', gt='HR'),
            filename_tmpl=dict(img='{}x2', gt='{}'),
            search_key='gt',
            pipeline=val_pipeline))


def _metrics(prefix=None):
    return [
        dict(type='MAE', prefix=prefix),
        dict(type='PSNR', crop_border=scale, convert_to='Y', prefix=prefix),
        dict(type='SSIM', crop_border=scale, convert_to='Y', prefix=prefix),
    ]


val_dataloader = _benchmark('Set5')
val_evaluator = dict(type='Evaluator', metrics=_metrics())

_test_sets = ['Set5', 'Set14', 'B100', 'Urban100', 'Manga109']
test_dataloader = [_benchmark(name) for name in _test_sets]
test_evaluator = [dict(type='Evaluator', metrics=_metrics(name)) for name in _test_sets]

train_cfg = dict(type='IterBasedTrainLoop', max_iters=500000, val_interval=5000)
val_cfg = dict(type='MultiValLoop')
test_cfg = dict(type='MultiTestLoop')

# Deraining data: Rain13K for training, Rain100L for validation, Rain100H/Rain100L/Test100/
# Test1200/Test2800 for testing (Restormer's Deraining/ layout: <set>/input, <set>/target);
# PSNR/SSIM on Y without border, as Restormer's evaluation.  Edit `data_root`.
data_root = 'datasets/Deraining'
gt_patch_size = 128

data_preprocessor = dict(type='DataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.])

_load = [
    dict(type='LoadImageFromFile', key='img', color_type='color', channel_order='rgb',
         imdecode_backend='cv2'),
    dict(type='LoadImageFromFile', key='gt', color_type='color', channel_order='rgb',
         imdecode_backend='cv2'),
]
train_pipeline = _load + [
    dict(type='SetValues', dictionary=dict(scale=1)),
    dict(type='PairedRandomCrop', gt_patch_size=gt_patch_size),
    # the 8 flips/rotations of Restormer's geometric augmentation
    dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5, direction='horizontal'),
    dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5, direction='vertical'),
    dict(type='RandomTransposeHW', keys=['img', 'gt'], transpose_ratio=0.5),
    dict(type='PackInputs'),
]
val_pipeline = _load + [dict(type='PackInputs')]

train_dataloader = dict(
    num_workers=8,
    batch_size=8,  # per GPU; 8 GPUs in the official run
    drop_last=True,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='BasicImageDataset',
        metainfo=dict(dataset_type='rain13k', task_name='deraining'),
        data_root=data_root + '/train/Rain13K',
        data_prefix=dict(img='input', gt='target'),
        search_key='gt',
        pipeline=train_pipeline))


def _rain_set(name):
    return dict(
        num_workers=2,
        persistent_workers=False,
        drop_last=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            type='BasicImageDataset',
            metainfo=dict(dataset_type=name.lower(), task_name='deraining'),
            data_root=f'{data_root}/test/{name}',
            data_prefix=dict(img='input', gt='target'),
            search_key='gt',
            pipeline=val_pipeline))


def _metrics(prefix=None):
    return [
        dict(type='MAE', prefix=prefix),
        dict(type='PSNR', convert_to='Y', prefix=prefix),
        dict(type='SSIM', convert_to='Y', prefix=prefix),
    ]


val_dataloader = _rain_set('Rain100L')
val_evaluator = dict(type='Evaluator', metrics=_metrics())

_test_sets = ['Rain100H', 'Rain100L', 'Test100', 'Test1200', 'Test2800']
test_dataloader = [_rain_set(name) for name in _test_sets]
test_evaluator = [dict(type='Evaluator', metrics=_metrics(name)) for name in _test_sets]

train_cfg = dict(type='IterBasedTrainLoop', max_iters=300000, val_interval=4000)
val_cfg = dict(type='MultiValLoop')
test_cfg = dict(type='MultiTestLoop')

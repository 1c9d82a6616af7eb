# Motion deblurring data: GoPro crops for training and validation, GoPro/HIDE/RealBlur_J/RealBlur_R
# for testing (Restormer's Motion_Deblurring/ layout, options/train_restormer_deblur.yml); PSNR/SSIM
# on RGB without border, as options/test_restormer_deblur.yml (test_y_channel: false).  Edit `data_root`.
data_root = 'datasets/Motion_Deblurring'
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
        metainfo=dict(dataset_type='gopro', task_name='deblurring'),
        data_root=data_root + '/train/GoPro',
        data_prefix=dict(img='input_crops', gt='target_crops'),
        search_key='gt',
        pipeline=train_pipeline))


def _blur_set(name, split='test', crops=''):
    return dict(
        num_workers=2,
        persistent_workers=False,
        drop_last=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            type='BasicImageDataset',
            metainfo=dict(dataset_type=name.lower(), task_name='deblurring'),
            data_root=f'{data_root}/{split}/{name}',
            data_prefix=dict(img='input' + crops, gt='target' + crops),
            search_key='gt',
            pipeline=val_pipeline))


def _metrics(prefix=None):
    return [
        dict(type='MAE', prefix=prefix),
        dict(type='PSNR', prefix=prefix),
        dict(type='SSIM', prefix=prefix),
    ]


val_dataloader = _blur_set('GoPro', 'val', '_crops')
val_evaluator = dict(type='Evaluator', metrics=_metrics())

_test_sets = ['GoPro', 'HIDE', 'RealBlur_J', 'RealBlur_R']
test_dataloader = [_blur_set(name) for name in _test_sets]
test_evaluator = [dict(type='Evaluator', metrics=_metrics(name)) for name in _test_sets]

train_cfg = dict(type='IterBasedTrainLoop', max_iters=300000, val_interval=4000)
val_cfg = dict(type='MultiValLoop')
test_cfg = dict(type='MultiTestLoop')

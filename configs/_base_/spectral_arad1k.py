# Spectral reconstruction data (RGB -> 31 bands): NTIRE 2022 ARAD-1K in MST++'s layout, as
# options/train_mstpp_ntire.yml: datasets/ARAD_1K/Train_Spec/ARAD_1K_0001.mat (MATLAB v7.3, variable
# `cube`), datasets/ARAD_1K/Train_RGB/ARAD_1K_0001.jpg, split_txt/{train,valid}_list.txt.  Edit
# `data_root`.  Training: 128x128 patches on a stride-8 grid of every image, MST++'s 8 random
# rotations/flips (MMagic's Flip x2 + RandomTransposeHW), batch 20; validation and testing: the
# whole validation images scored on [128:-128, 128:-128] (MRAE, RMSE, PSNR as MST++'s validate()).
# The RGB images are min-max normalised per image (MST++'s `-norm`), the cubes used as read: the
# preprocessor neither normalises nor clamps (agile_ir.SpectralDataPreprocessor).
data_root = 'datasets/ARAD_1K'
patch_size = 128
crop_border = 128

data_preprocessor = dict(type='agile_ir.SpectralDataPreprocessor')

train_pipeline = [
    dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5, direction='horizontal'),
    dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5, direction='vertical'),
    dict(type='RandomTransposeHW', keys=['img', 'gt'], transpose_ratio=0.5),
    dict(type='PackInputs'),
]
val_pipeline = [dict(type='PackInputs')]

_dataset = dict(
    type='agile_ir.SpectralDataset',
    metainfo=dict(dataset_type='arad_1k', task_name='spectral_reconstruction'),
    data_root=data_root,
    data_prefix=dict(img='Train_RGB', gt='Train_Spec'),
    mat_key='cube',
    rgb_norm='minmax',
    bgr2rgb=True)

train_dataloader = dict(
    num_workers=2,
    batch_size=20,  # one GPU in the official run
    drop_last=True,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(_dataset, ann_file='split_txt/train_list.txt', patch_size=patch_size, stride=8,
                 cache_data=False,  # True keeps every cube in memory as MST++ does (~28 GB)
                 pipeline=train_pipeline))

val_dataloader = dict(
    num_workers=2,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_dataset, ann_file='split_txt/valid_list.txt', pipeline=val_pipeline))
val_evaluator = dict(type='Evaluator', metrics=[dict(type='agile_ir.SpectralMetrics', crop_border=crop_border)])

test_dataloader = [val_dataloader]  # NTIRE 2022's test cubes are not public: the validation scenes
test_evaluator = [dict(type='Evaluator', metrics=[dict(type='agile_ir.SpectralMetrics', crop_border=crop_border,
                                                       prefix='ARAD_1K')])]

train_cfg = dict(type='IterBasedTrainLoop', max_iters=300000, val_interval=1000)
val_cfg = dict(type='MultiValLoop')
test_cfg = dict(type='MultiTestLoop')

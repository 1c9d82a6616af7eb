# SwinIR-light x4 on DIV2K -- "SwinIR: Image Restoration Using Swin Transformer" (Liang et al.,
# ICCVW 2021), lightweight SR, with MMagic's own `SwinIRNet` (nothing of ours): the baseline of
# AgileIR under the same trainer and recipe (options/train_swinir_light_x4.yml): LR patch 64,
# batch 64 in total (16/GPU x 4), Adam 2e-4 betas (0.9, 0.99), 500k iterations, MultiStepLR
# [250k, 400k, 450k, 475k] x0.5, L1.
#   python tools/train.py configs/swinir/swinir_light_x4_div2k.py --work-dir work_dirs/swinir_light_x4
_base_ = ['../_base_/default_runtime.py', '../_base_/sr_div2k_x4.py']

experiment_name = 'swinir_light_x4_div2k'
work_dir = f'./work_dirs/{experiment_name}'
scale = 4

model = dict(
    type='agile_ir.BaseEditModel',  # MMagic's, loading every checkpoint layout whole or not at all
    generator=dict(
        type='SwinIRNet',
        upscale=scale,
        in_chans=3,
        img_size=64,
        window_size=8,
        img_range=1.,
        depths=[6, 6, 6, 6],
        embed_dim=60,
        num_heads=[6, 6, 6, 6],
        mlp_ratio=2,
        upsampler='pixelshuffledirect',
        resi_connection='1conv'),
    pixel_loss=dict(type='L1Loss', loss_weight=1.0, reduction='mean'),
    train_cfg=dict(),
    test_cfg=dict(),
    data_preprocessor=dict(type='DataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.]))

optim_wrapper = dict(
    constructor='DefaultOptimWrapperConstructor',
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=2e-4, betas=(0.9, 0.99), weight_decay=0.))

param_scheduler = dict(type='MultiStepLR', by_epoch=False, milestones=[250000, 400000, 450000, 475000],
                       gamma=0.5)

auto_scale_lr = dict(enable=False, base_batch_size=64)

# ESC's recipe, scale-free -- "Emulating Self-attention with Convolution for Efficient Image
# Super-Resolution" (Lee et al., arXiv 2503.06671), as the official ESC_DIV2K options and
# options/train_esc_x*.yml: AdamW 5e-4 betas (0.9, 0.9) no weight decay, 20k linear warm-up,
# MultiStepLR [250k, 400k, 450k, 475k, 490k] x0.5, 500k iterations, L1, EMA 0.999 (validated and
# saved with the EMA weights).  A config adds the data (../sr_div2k_x<s>.py) and sets the
# generator's `upscaling_factor` (and its size for ESC-light / ESCFP).
_base_ = ['./edit_model.py']

model = dict(
    generator=dict(
        type='ESC',
        dim=64,
        pdim=16,
        kernel_size=13,
        n_blocks=5,
        conv_blocks=5,
        window_size=32,
        num_heads=4,
        upscaling_factor=None,  # set by each config to its scale
        exp_ratio=1.25))

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.9), weight_decay=0.))

param_scheduler = [
    # BasicSR's warm-up: lr * iter / 20000 for the first 20k iterations
    dict(type='LinearLR', start_factor=1. / 20000, end_factor=1., by_epoch=False, begin=0, end=20000),
    dict(type='MultiStepLR', by_epoch=False, milestones=[250000, 400000, 450000, 475000, 490000],
         gamma=0.5),
]

# mmengine's momentum is 1 - decay: ema = 0.999 * ema + 0.001 * weights, after every iteration
custom_hooks = [
    dict(type='BasicVisualizationHook', interval=1),
    dict(type='EMAHook', momentum=0.001, priority='ABOVE_NORMAL'),
]

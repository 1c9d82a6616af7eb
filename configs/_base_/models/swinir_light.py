# SwinIR-light's recipe, scale-free -- "SwinIR: Image Restoration Using Swin Transformer" (Liang
# et al., ICCVW 2021), lightweight SR, with MMagic's own `SwinIRNet`, as
# options/train_swinir_light_x4.yml and options/train_agileir_x*.yml (AgileIR keeps its
# baseline's recipe): LR patch 64, batch 64 in total (16/GPU x 4), Adam 2e-4 betas (0.9, 0.99),
# no warm-up, 500k iterations, MultiStepLR [250k, 400k, 450k, 475k] x0.5, L1, EMA 0.999.  A config
# adds the data (../sr_div2k_x<s>.py) and sets the generator's `upscale` (and `type` for AgileIR).
_base_ = ['./edit_model.py']

model = dict(
    generator=dict(
        type='SwinIRNet',
        upscale=None,  # set by each config to its scale
        in_chans=3,
        img_size=64,
        window_size=8,
        img_range=1.,
        depths=[6, 6, 6, 6],
        embed_dim=60,
        num_heads=[6, 6, 6, 6],
        mlp_ratio=2,
        upsampler='pixelshuffledirect',
        resi_connection='1conv'))

optim_wrapper = dict(optimizer=dict(type='Adam', lr=2e-4, betas=(0.9, 0.99), weight_decay=0.))

param_scheduler = dict(type='MultiStepLR', by_epoch=False, milestones=[250000, 400000, 450000, 475000],
                       gamma=0.5)

# mmengine's momentum is 1 - decay: ema = 0.999 * ema + 0.001 * weights (the options' ema_decay)
custom_hooks = [
    dict(type='BasicVisualizationHook', interval=1),
    dict(type='EMAHook', momentum=0.001, priority='ABOVE_NORMAL'),
]

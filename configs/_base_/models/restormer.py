# Restormer's recipe, task-free -- "Restormer: Efficient Transformer for High-Resolution Image
# Restoration" (Zamir et al., CVPR 2022), our Restormer (official layout: its checkpoints load
# strict) with MDTA, as options/train_restormer_{derain,deblur}.yml: AdamW 3e-4 (wd 1e-4), 300k
# iterations: 92k at a constant 3e-4, then cosine 3e-4 -> 1e-6 over 208k; L1; gradient clipping
# 0.01.  MMagic has no progressive patch schedule: the first stage of the official one is used
# throughout (128 px, 8 patches/GPU, 8 GPUs; see the data bases).  MMagic ships its own
# `Restormer`; ours is named with its scope, `agile_ir.Restormer`.  A config adds the data
# (../derain_rain13k.py, ../deblur_gopro.py).
_base_ = ['./edit_model.py']

model = dict(
    generator=dict(
        type='agile_ir.Restormer',
        inp_channels=3,
        out_channels=3,
        dim=48,
        num_blocks=[4, 6, 6, 8],
        num_refinement_blocks=4,
        heads=[1, 2, 4, 8],
        ffn_expansion_factor=2.66,
        bias=False,
        LayerNorm_type='WithBias',
        dual_pixel_task=False,
        attn='mdta'))

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=3e-4, betas=(0.9, 0.999), weight_decay=1e-4),
    clip_grad=dict(max_norm=0.01))

param_scheduler = [
    dict(type='ConstantLR', factor=1., by_epoch=False, begin=0, end=92000),
    dict(type='CosineAnnealingLR', T_max=208000, eta_min=1e-6, by_epoch=False, begin=92000, end=300000),
]

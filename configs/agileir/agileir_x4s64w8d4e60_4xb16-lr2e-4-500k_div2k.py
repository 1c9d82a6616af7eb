# AgileIR x4 on DIV2K -- "AgileIR: Memory-Efficient Group Shifted Windows Attention for Agile
# Image Restoration" (Cai et al., 2024): SwinIR-light's skeleton with group shifted-window
# attention (GSWA).  Same trainer, data and recipe as its baseline (../_base_/models/swinir_light.py,
# options/train_agileir_x4.yml): AgileIR takes SwinIR's constructor arguments, so only the
# generator type changes; its own options (Q/K width, groups, attention backend) keep the defaults.
#   python tools/train.py configs/agileir/agileir_x4s64w8d4e60_4xb16-lr2e-4-500k_div2k.py --work-dir work_dirs/agileir_x4
_base_ = ['../_base_/models/swinir_light.py', '../_base_/sr_div2k_x4.py']

experiment_name = 'agileir_x4s64w8d4e60_4xb16-lr2e-4-500k_div2k'
work_dir = f'./work_dirs/{experiment_name}'
scale = 4

model = dict(generator=dict(type='AgileIR', upscale=scale))

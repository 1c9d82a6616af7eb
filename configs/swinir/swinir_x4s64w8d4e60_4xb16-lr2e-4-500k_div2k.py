# SwinIR-light x4 on DIV2K (LR patch 64, window 8, 4 stages of depth 6, embedding 60) with MMagic's
# own `SwinIRNet` (nothing of ours): the baseline of AgileIR under the same trainer and recipe
# (options/train_swinir_light_x4.yml, ../_base_/models/swinir_light.py).  MMagic's own
# swinir_x4s64w8d4e60_8xb4-lr2e-4-500k_div2k.py is this model at 8 GPUs x 4.
#   python tools/train.py configs/swinir/swinir_x4s64w8d4e60_4xb16-lr2e-4-500k_div2k.py --work-dir work_dirs/swinir_light_x4
_base_ = ['../_base_/models/swinir_light.py', '../_base_/sr_div2k_x4.py']

experiment_name = 'swinir_x4s64w8d4e60_4xb16-lr2e-4-500k_div2k'
work_dir = f'./work_dirs/{experiment_name}'
scale = 4

model = dict(generator=dict(upscale=scale))

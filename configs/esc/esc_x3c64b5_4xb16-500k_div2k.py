# ESC x3 on DIV2K (64 channels, 5 blocks), the recipe of the official ESC_DIV2K_X3 options and
# options/train_esc_x3.yml: ../_base_/models/esc.py with the x3 data (LR patch 64, 16/GPU x 4).
#   python tools/train.py configs/esc/esc_x3c64b5_4xb16-500k_div2k.py --work-dir work_dirs/esc_x3
#   torchrun --nproc_per_node=4 tools/train.py configs/esc/esc_x3c64b5_4xb16-500k_div2k.py --launcher pytorch
_base_ = ['../_base_/models/esc.py', '../_base_/sr_div2k_x3.py']

experiment_name = 'esc_x3c64b5_4xb16-500k_div2k'
work_dir = f'./work_dirs/{experiment_name}'
scale = 3

model = dict(generator=dict(upscaling_factor=scale))

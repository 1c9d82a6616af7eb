# ESC x4 on DIV2K (64 channels, 5 blocks), the recipe of the official ESC_DIV2K_X4 options and
# options/train_esc_x4.yml: ../_base_/models/esc.py with the x4 data (LR patch 64, 16/GPU x 4).
#   python tools/train.py configs/esc/esc_x4c64b5_4xb16-500k_div2k.py --work-dir work_dirs/esc_x4
#   torchrun --nproc_per_node=4 tools/train.py configs/esc/esc_x4c64b5_4xb16-500k_div2k.py --launcher pytorch
# The official x4 run starts from x2 weights: that is not a load_from (the upsampler differs);
# convert the x2 body yourself and say so, nothing loads it partially behind your back.
_base_ = ['../_base_/models/esc.py', '../_base_/sr_div2k_x4.py']

experiment_name = 'esc_x4c64b5_4xb16-500k_div2k'
work_dir = f'./work_dirs/{experiment_name}'
scale = 4

model = dict(generator=dict(upscaling_factor=scale))

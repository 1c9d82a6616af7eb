# ESC-FP x4 on DIV2K: ESC with the decomposed ConvAttn (48 channels, 3 heads), same recipe
# (options/train_escfp_x4.yml).
#   python tools/train.py configs/esc/escfp_x4c48b5_4xb16-500k_div2k.py --work-dir work_dirs/escfp_x4
_base_ = ['./esc_x4c64b5_4xb16-500k_div2k.py']

experiment_name = 'escfp_x4c48b5_4xb16-500k_div2k'
work_dir = f'./work_dirs/{experiment_name}'

model = dict(generator=dict(type='ESCFP', dim=48, num_heads=3))

# ESC-light x4 on DIV2K: ESC with 3 blocks instead of 5, same recipe (options/train_esc_light_x4.yml).
#   python tools/train.py configs/esc/esc-light_x4c64b3_4xb16-500k_div2k.py --work-dir work_dirs/esc_light_x4
_base_ = ['./esc_x4c64b5_4xb16-500k_div2k.py']

experiment_name = 'esc-light_x4c64b3_4xb16-500k_div2k'
work_dir = f'./work_dirs/{experiment_name}'

model = dict(generator=dict(n_blocks=3))

# Restormer with GLMHA in place of every MDTA (default ranks), motion deblurring, at the same
# recipe (options/train_restormer_glmha_deblur.yml).
#   python tools/train.py configs/restormer/restormer-glmha_c48_8xb8-lr3e-4-300k_gopro.py --work-dir work_dirs/restormer_glmha_deblur
_base_ = ['./restormer_c48_8xb8-lr3e-4-300k_gopro.py']

experiment_name = 'restormer-glmha_c48_8xb8-lr3e-4-300k_gopro'
work_dir = f'./work_dirs/{experiment_name}'

model = dict(generator=dict(attn='glmha'))

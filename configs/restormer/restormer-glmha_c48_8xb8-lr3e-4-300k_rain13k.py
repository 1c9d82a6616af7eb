# Restormer with GLMHA in place of every MDTA (agile_ir_plugin.archs.glmha, default ranks), deraining,
# at the same recipe (options/train_restormer_glmha_derain.yml).
#   python tools/train.py configs/restormer/restormer-glmha_c48_8xb8-lr3e-4-300k_rain13k.py --work-dir work_dirs/restormer_glmha_derain
_base_ = ['./restormer_c48_8xb8-lr3e-4-300k_rain13k.py']

experiment_name = 'restormer-glmha_c48_8xb8-lr3e-4-300k_rain13k'
work_dir = f'./work_dirs/{experiment_name}'

model = dict(generator=dict(attn='glmha'))

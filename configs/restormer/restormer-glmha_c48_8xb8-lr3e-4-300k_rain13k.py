# Restormer with GLMHA in place of every MDTA (agile_ir_plugin.archs.glmha), deraining, at the
# same recipe as configs/restormer/restormer_derain.py (options/train_restormer_glmha_derain.yml).
#   python tools/train.py configs/restormer/restormer_glmha_derain.py --work-dir work_dirs/restormer_glmha
_base_ = ['./restormer_derain.py']

experiment_name = 'restormer_glmha_derain'
work_dir = f'./work_dirs/{experiment_name}'

model = dict(generator=dict(attn='glmha'))

# Restormer deraining on Rain13K (48 channels, MDTA), options/train_restormer_derain.yml:
# ../_base_/models/restormer.py with ../_base_/derain_rain13k.py.
#   python tools/train.py configs/restormer/restormer_c48_8xb8-lr3e-4-300k_rain13k.py --work-dir work_dirs/restormer_derain
_base_ = ['../_base_/models/restormer.py', '../_base_/derain_rain13k.py']

experiment_name = 'restormer_c48_8xb8-lr3e-4-300k_rain13k'
work_dir = f'./work_dirs/{experiment_name}'

# Restormer motion deblurring on GoPro (48 channels, MDTA), options/train_restormer_deblur.yml:
# ../_base_/models/restormer.py with ../_base_/deblur_gopro.py.
#   python tools/train.py configs/restormer/restormer_c48_8xb8-lr3e-4-300k_gopro.py --work-dir work_dirs/restormer_deblur
_base_ = ['../_base_/models/restormer.py', '../_base_/deblur_gopro.py']

experiment_name = 'restormer_c48_8xb8-lr3e-4-300k_gopro'
work_dir = f'./work_dirs/{experiment_name}'

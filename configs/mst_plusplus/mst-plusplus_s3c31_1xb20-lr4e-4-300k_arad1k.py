# MST++ (3 stages, 31 channels, S-MSA) on NTIRE 2022 ARAD-1K, options/train_mstpp_ntire.yml -- the
# official recipe (caiyuanhao1998/MST-plus-plus, train_code/train.py): Adam 4e-4 betas (0.9, 0.999),
# one cosine cycle to 1e-6 over 300k iterations, MRAE loss, 128x128 patches, batch 20 on one GPU.
# ../_base_/models/edit_model.py (agile_ir.BaseEditModel: official MST++ checkpoints, `state_dict`
# with `module.`, load through load_from) with ../_base_/spectral_arad1k.py.
#   python -m agile_ir_plugin.mmagic.train configs/mst_plusplus/mst-plusplus_s3c31_1xb20-lr4e-4-300k_arad1k.py --work-dir work_dirs/mstpp
_base_ = ['../_base_/models/edit_model.py', '../_base_/spectral_arad1k.py']

experiment_name = 'mst-plusplus_s3c31_1xb20-lr4e-4-300k_arad1k'
work_dir = f'./work_dirs/{experiment_name}'

model = dict(
    generator=dict(type='MSTPlusPlus', in_channels=3, out_channels=31, n_feat=31, stage=3, attn='smsa'),
    pixel_loss=dict(_delete_=True, type='agile_ir.MRAELoss', loss_weight=1.0, reduction='mean'),
    data_preprocessor=dict(_delete_=True, type='agile_ir.SpectralDataPreprocessor'))

optim_wrapper = dict(optimizer=dict(type='Adam', lr=4e-4, betas=(0.9, 0.999), weight_decay=0.))

param_scheduler = dict(type='CosineAnnealingLR', T_max=300000, eta_min=1e-6, by_epoch=False, begin=0, end=300000)

# validation every 1k iterations (the options' val_freq, ../_base_/spectral_arad1k.py), checkpoints
# every 5k; keep the one of the best validation MRAE; no image visualisation (31 bands)
default_hooks = dict(checkpoint=dict(save_best='MRAE', rule='less'))
custom_hooks = []

# --auto-scale-lr: the recipe's global batch
auto_scale_lr = dict(enable=False, base_batch_size=20)

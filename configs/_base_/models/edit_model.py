# What every model of the plugin shares in MMagic: the runtime, agile_ir.BaseEditModel (MMagic's
# BaseEditModel, loading every checkpoint layout whole or not at all) with an L1 pixel loss on
# 0..1 images, mmengine's default optimizer wrapper, and the recipes' global batch of 64 for
# --auto-scale-lr.  esc.py, swinir_light.py and restormer.py add the generator, the optimizer and
# the schedule.  `load_from` (None in the runtime) takes a checkpoint in any layout (MMagic, BasicSR
# params/params_ema, official code, bare): every tensor loads or the run stops with one line.
_base_ = ['../default_runtime.py']

model = dict(
    type='agile_ir.BaseEditModel',
    pixel_loss=dict(type='L1Loss', loss_weight=1.0, reduction='mean'),
    train_cfg=dict(),
    test_cfg=dict(),
    data_preprocessor=dict(type='DataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.]))

optim_wrapper = dict(constructor='DefaultOptimWrapperConstructor', type='OptimWrapper')

# --auto-scale-lr rescales lr for another world size / batch
auto_scale_lr = dict(enable=False, base_batch_size=64)

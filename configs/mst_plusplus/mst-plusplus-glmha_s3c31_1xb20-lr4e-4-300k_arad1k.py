# MST++ with GLMHA (agile_ir_plugin.archs.glmha, default ranks) in place of every S-MSA, at the same
# recipe (options/train_mstpp_glmha_ntire.yml).
#   python -m agile_ir_plugin.mmagic.train configs/mst_plusplus/mst-plusplus-glmha_s3c31_1xb20-lr4e-4-300k_arad1k.py --work-dir work_dirs/mstpp_glmha
_base_ = ['./mst-plusplus_s3c31_1xb20-lr4e-4-300k_arad1k.py']

experiment_name = 'mst-plusplus-glmha_s3c31_1xb20-lr4e-4-300k_arad1k'
work_dir = f'./work_dirs/{experiment_name}'

model = dict(generator=dict(attn='glmha'))

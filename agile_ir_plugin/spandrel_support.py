"""spandrel support: ``spandrel.ModelLoader().load_from_file(ckpt)`` for the plugin's archs.

spandrel (how chaiNNer and ComfyUI load restoration checkpoints) detects an architecture from the
keys of a state dict and reads its hyper-parameters from the shapes.  :func:`install` adds, through
spandrel's own extension point (``spandrel.MAIN_REGISTRY.add(ArchSupport(...))``, as
``spandrel_extra_arches.install()`` does), ESC and ESC-light (one class), ESCFP, AgileIR,
Restormer+GLMHA and MST++ (S-MSA or GLMHA), all detected before spandrel's own architectures::

    import spandrel
    from agile_ir_plugin.spandrel_support import install
    install()
    model = spandrel.ModelLoader().load_from_file('esc_x4.pth')   # model.scale == 4

Every layout the plugin reads loads (BasicSR ``params`` / ``params_ema``, official ``state_dict`` and
``module.``, MMagic ``generator.`` / ``generator_ema.``, bare).  Hyper-parameters are read from the
shapes and then checked by building the network (on the ``meta`` device, no memory) and comparing
every key and shape: a load is the whole state dict or an error naming what does not fit, never a
guess.  A GLMHA checkpoint is never taken for a plain Restormer (plain Restormer stays spandrel's).
Pure torch + spandrel: nothing of BasicSR or MMagic is imported.
"""
import itertools
import math
import re

import torch

from . import archs
from .checkpoint import describe_mismatch, extract_state_dict, load_state_dict_exact

__all__ = ['ARCH_IDS', 'install', 'arch_supports', 'infer']

ARCH_IDS = ('agile_ir.ESC', 'agile_ir.ESCFP', 'agile_ir.AgileIR', 'agile_ir.RestormerGLMHA', 'agile_ir.MSTPlusPlus')


def _count(sd, prefix):
    """Number of consecutive ``prefix<i>.`` children (``blocks.`` -> 5)."""
    pat = re.compile(re.escape(prefix) + r'(\d+)\.')
    found = {int(m.group(1)) for k in sd for m in [pat.match(k)] if m}
    return max(found) + 1 if found else 0


def _our_weights(sd):
    """An MMagic state dict (``generator.`` / ``generator_ema.`` keys, as spandrel leaves it) -> the
    generator's own keys (EMA weights first, as spandrel prefers ``params_ema``); others unchanged."""
    if any(k.startswith(('generator.', 'generator_ema.')) for k in sd):
        ckpt = {'state_dict': dict(sd)}
        key = 'generator_ema' if any(k.startswith('generator_ema.') for k in sd) else 'generator'
        return extract_state_dict(ckpt, key, 'checkpoint')[0]
    return sd


def _shapes_fit(cls, kwargs, sd):
    """True when ``cls(**kwargs)`` has exactly the keys and shapes of ``sd`` (built on the meta device;
    on the CPU when an arch computes something at construction that meta tensors cannot)."""
    for device in ('meta', 'cpu'):
        try:
            with torch.device(device):
                net = cls(**kwargs)
        except (ValueError, TypeError, AssertionError, ZeroDivisionError):
            return False  # e.g. a head count that does not divide the width: not this configuration
        except (RuntimeError, NotImplementedError):
            continue  # meta tensors cannot do this: build it on the CPU
        return not describe_mismatch(net.state_dict(), sd)
    return False


# ------------------------------------------------------------------------------------------------
# Per arch: detect (keys only) and candidate constructor arguments (from shapes)
# ------------------------------------------------------------------------------------------------
def _sr_scale(out_channels, in_channels=3):
    s = math.isqrt(out_channels // in_channels)
    return s if s * s * in_channels == out_channels else None


def _esc_common(sd):
    rpb = sd['blocks.0.attn.relative_position_bias']
    dim = sd['proj.weight'].shape[0]
    hidden = sd['blocks.0.convffns.0.proj.weight'].shape[0]
    return dict(dim=dim, n_blocks=_count(sd, 'blocks.'), conv_blocks=_count(sd, 'blocks.0.convffns.'),
                window_size=(math.isqrt(rpb.shape[1]) + 1) // 2, num_heads=rpb.shape[0],
                upscaling_factor=_sr_scale(sd['to_img.weight'].shape[0])), [hidden / dim, 1.25, 2.0, 1.0]


def _esc_detect(sd):
    return all(k in sd for k in ('plk_filter', 'proj.weight', 'to_img.weight', 'blocks.0.attn.relative_position_bias',
                                 'blocks.0.convffns.0.proj.weight'))


def _esc_candidates(sd):
    base, ratios = _esc_common(sd)
    base.update(pdim=sd['plk_filter'].shape[0], kernel_size=sd['plk_filter'].shape[-1],
                use_ln='blocks.0.lns.0.weight' in sd)
    return [dict(base, exp_ratio=r) for r in ratios]


def _escfp_detect(sd):
    return all(k in sd for k in ('lk_channel', 'lk_spatial', 'proj.weight', 'to_img.weight',
                                 'blocks.0.attn.relative_position_bias', 'blocks.0.convffns.0.proj.weight'))


def _escfp_candidates(sd):
    base, ratios = _esc_common(sd)
    base.update(pdim=sd['lk_channel'].shape[0], kernel_size=sd['lk_spatial'].shape[-1])
    return [dict(base, exp_ratio=r) for r in ratios]


_AGILE = 'layers.0.residual_group.blocks.0.'


def _agileir_detect(sd):
    # SwinIR's own checkpoints keep relative_position_index (a buffer AgileIR does not save)
    return ('conv_first.weight' in sd and _AGILE + 'attn.relative_position_bias_table' in sd
            and _AGILE + 'attn.qkv.weight' in sd and _AGILE + 'attn.relative_position_index' not in sd)


def _agileir_candidates(sd):
    embed, in_chans = sd['conv_first.weight'].shape[:2]
    qkv_out, qkv_in = sd[_AGILE + 'attn.qkv.weight'].shape
    table = sd[_AGILE + 'attn.relative_position_bias_table']
    n_layers = _count(sd, 'layers.')
    base = dict(in_chans=in_chans, embed_dim=embed, window_size=(math.isqrt(table.shape[0]) + 1) // 2,
                depths=[_count(sd, f'layers.{i}.residual_group.blocks.') for i in range(n_layers)],
                num_heads=[sd[f'layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table'].shape[1]
                           for i in range(n_layers)],
                mlp_ratio=sd[_AGILE + 'mlp.fc1.weight'].shape[0] / embed, num_groups=embed // qkv_in,
                qk_dim=(qkv_out - embed) // 2, qkv_bias=_AGILE + 'attn.qkv.bias' in sd,
                resi_connection='1conv' if 'layers.0.conv.weight' in sd else '3conv',
                patch_norm='patch_norm.weight' in sd, ape='absolute_pos_embed' in sd)
    scale = _sr_scale(sd['upsample.0.weight'].shape[0], in_chans)  # AgileIR: pixelshuffledirect only
    return [dict(base, upsampler='pixelshuffledirect', upscale=scale)] if scale else []


_RESTORMER_LEVELS = ('encoder_level1.', 'encoder_level2.', 'encoder_level3.', 'latent.')


def _restormer_glmha_detect(sd):
    if not all(f'{lvl}0.attn.qkv.weight' in sd for lvl in _RESTORMER_LEVELS) or 'patch_embed.proj.weight' not in sd:
        return False
    glmha = [any(k.startswith(f'{lvl}0.attn.calibration.') for k in sd)
             or sd[f'{lvl}0.attn.qkv.weight'].shape[0] != 3 * sd[f'{lvl}0.attn.project_out.weight'].shape[0]
             for lvl in _RESTORMER_LEVELS]
    return any(glmha)


def _restormer_glmha_candidates(sd):
    dim = sd['patch_embed.proj.weight'].shape[0]
    hidden = sd['encoder_level1.0.ffn.project_out.weight'].shape[1]
    attn, ranks, heads, reductions = [], [], [], []
    for lvl in _RESTORMER_LEVELS:
        width = sd[f'{lvl}0.attn.project_out.weight'].shape[0]
        h = sd[f'{lvl}0.attn.temperature'].shape[0]
        qkv = sd[f'{lvl}0.attn.qkv.weight'].shape[0]
        is_glmha = any(k.startswith(f'{lvl}0.attn.calibration.') for k in sd) or qkv != 3 * width
        rank = (qkv - width) // (2 * h) if is_glmha else None
        attn.append('glmha' if is_glmha else 'mdta')
        ranks.append(rank or 1)
        reductions.append(width / h / rank if rank else 2.0)
        heads.append(h)
    calibrated = any('.attn.calibration.' in k for k in sd)
    latent_fc1 = sd.get('latent.0.attn.calibration.fc1.weight')
    calib_reductions = [16, 8, 4, 32]
    if latent_fc1 is not None and sd['latent.0.attn.project_out.weight'].shape[0] // latent_fc1.shape[0] > 0:
        calib_reductions.append(sd['latent.0.attn.project_out.weight'].shape[0] // latent_fc1.shape[0])
    base = dict(inp_channels=sd['patch_embed.proj.weight'].shape[1], out_channels=sd['output.weight'].shape[0],
                dim=dim, num_blocks=[_count(sd, lvl) for lvl in _RESTORMER_LEVELS],
                num_refinement_blocks=_count(sd, 'refinement.'), heads=heads,
                bias='encoder_level1.0.attn.project_out.bias' in sd,
                LayerNorm_type='WithBias' if 'encoder_level1.0.norm1.body.bias' in sd else 'BiasFree',
                dual_pixel_task='skip_conv.weight' in sd, glmha_calibration=calibrated)
    level_attn = attn if len(set(attn)) > 1 else 'glmha'
    glmha_variants = [dict(attn='glmha', glmha_preset=p) for p in ('default', 'paper')] + [
        dict(attn=level_attn, glmha_reduction=reductions), dict(attn=level_attn, glmha_rank=ranks)]
    factors = [2.66, hidden / dim, round(hidden / dim, 2), round(hidden / dim, 2) + 0.01, 2.0, 4.0]
    for variant, f, c in itertools.product(glmha_variants, factors, calib_reductions if calibrated else [16]):
        yield dict(base, **variant, ffn_expansion_factor=f, glmha_calib_reduction=c)


def _mstpp_detect(sd):
    return all(k in sd for k in ('conv_in.weight', 'conv_out.weight', 'body.0.embedding.weight', 'body.0.mapping.weight'))


def _mstpp_candidates(sd):
    n_feat, in_channels = sd['conv_in.weight'].shape[:2]
    base = dict(in_channels=in_channels, out_channels=sd['conv_out.weight'].shape[0], n_feat=n_feat,
                stage=_count(sd, 'body.'))
    if not any('calibration.' in k for k in sd):
        yield dict(base, attn='smsa')
    for reduction, calibration, calib_reduction in itertools.product(
            [2.0, 1.0, 4.0, 8 / 3, 1.6], [True, False], [16, 8, 4]):
        yield dict(base, attn='glmha', glmha_reduction=reduction, glmha_calibration=calibration,
                   glmha_calib_reduction=calib_reduction)
    for calibration, calib_reduction in itertools.product([True, False], [16, 8, 4]):  # GLMHA at some levels only
        yield dict(base, attn='glmha', glmha_preset='paper', glmha_calibration=calibration,
                   glmha_calib_reduction=calib_reduction)


# arch id -> (class name, detect, candidates, purpose)
SPECS = {
    'agile_ir.ESC': ('ESC', _esc_detect, _esc_candidates, 'SR'),
    'agile_ir.ESCFP': ('ESCFP', _escfp_detect, _escfp_candidates, 'SR'),
    'agile_ir.AgileIR': ('AgileIR', _agileir_detect, _agileir_candidates, 'SR'),
    'agile_ir.RestormerGLMHA': ('Restormer', _restormer_glmha_detect, _restormer_glmha_candidates, 'Restoration'),
    'agile_ir.MSTPlusPlus': ('MSTPlusPlus', _mstpp_detect, _mstpp_candidates, 'Restoration'),
}


def infer(arch_id, state_dict):
    """``(constructor kwargs, model with every tensor loaded)`` for ``state_dict`` of ``arch_id``; raises
    ValueError (one line) when no configuration of the arch has exactly its keys and shapes."""
    name, _detect, candidates, _purpose = SPECS[arch_id]
    cls = archs.ARCHS[name]
    sd = _our_weights(state_dict)
    tried = 0
    for kwargs in candidates(sd):
        tried += 1
        if _shapes_fit(cls, kwargs, sd):
            model = cls(**kwargs)
            load_state_dict_exact(model, sd, f'{name} checkpoint')
            return kwargs, model.eval()
    raise ValueError(f'{arch_id}: the state dict has the keys of {name} but none of {tried} configurations read '
                     f'from its shapes fits it exactly; load it with agile_ir_plugin.archs.{name}(...) and '
                     f'agile_ir_plugin.checkpoint.load_state_dict_exact to see which keys differ.')


# ------------------------------------------------------------------------------------------------
# spandrel glue
# ------------------------------------------------------------------------------------------------
def _architecture_class():
    from spandrel import Architecture, ImageModelDescriptor

    class AgileArch(Architecture):
        def __init__(self, arch_id):
            name, detect, _candidates, purpose = SPECS[arch_id]
            super().__init__(id=arch_id, name=name if arch_id != 'agile_ir.RestormerGLMHA' else 'Restormer+GLMHA',
                             detect=lambda sd: detect(_our_weights(sd)))
            self.purpose = purpose

        def load(self, state_dict):
            kwargs, model = infer(self.id, state_dict)
            sd = model.state_dict()
            in_ch = kwargs.get('in_chans') or kwargs.get('inp_channels') or kwargs.get('in_channels') \
                or sd['proj.weight'].shape[1]
            out_ch = kwargs.get('out_channels') or kwargs.get('in_chans') or in_ch
            scale = kwargs.get('upscaling_factor', kwargs.get('upscale', 1)) if self.purpose == 'SR' else 1
            tags = [f'{k}={v}' for k, v in kwargs.items() if k in ('dim', 'embed_dim', 'n_feat', 'n_blocks', 'attn')]
            return ImageModelDescriptor(model, model.state_dict(), self, purpose=self.purpose, tags=tags,
                                        supports_half=False, supports_bfloat16=True, scale=scale,
                                        input_channels=in_ch, output_channels=out_ch)

    return AgileArch


def arch_supports(registry=None):
    """One ``spandrel.ArchSupport`` per arch of the plugin, each detected before every architecture
    already in ``registry`` (spandrel's MAIN_REGISTRY by default)."""
    import spandrel
    registry = spandrel.MAIN_REGISTRY if registry is None else registry
    others = tuple(a.architecture.id for a in registry.architectures() if a.architecture.id not in ARCH_IDS)
    arch_cls = _architecture_class()
    return [spandrel.ArchSupport.from_architecture(arch_cls(arch_id), before=others) for arch_id in ARCH_IDS]


def install(registry=None):
    """Add the plugin's archs to spandrel's ``MAIN_REGISTRY`` (or ``registry``); idempotent."""
    import spandrel
    registry = spandrel.MAIN_REGISTRY if registry is None else registry
    return registry.add(*arch_supports(registry), ignore_duplicates=True)

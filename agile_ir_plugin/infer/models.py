"""The network ``infer`` runs: built and loaded from a checkpoint, the arch and scale read from it.

``load_model(checkpoint, arch=None, scale=None, arch_args=None, param_key=None)`` returns a
``Loaded(model, scale, arch, kwargs, weights)``:

- no ``arch``: the plugin's archs (ESC, ESCFP, AgileIR, Restormer+GLMHA, MST++) are told from the
  keys and their hyper-parameters, scale included, from the shapes
  (``agile_ir_plugin.spandrel_support.infer``: every configuration is checked key by key); any
  other architecture through spandrel's detection when spandrel is installed;
- ``arch`` (a name of ``agile_ir_plugin.archs`` or BasicSR's ``ARCH_REGISTRY``) with its constructor
  arguments ``arch_args``; the scale, when not given, is the one whose network has exactly the
  checkpoint's keys and shapes (``checkpoint.infer_scale``); its ``window_size``, for an arch that is
  not ours, is the multiple the input is padded to (as BasicSR's ``SwinIRModel``).

Weights: ``params_ema`` when the checkpoint has it (the weights BasicSR validates with an EMA),
else ``params`` / the single set; ``param_key`` picks one.  Every load is whole
(``checkpoint.load_state_dict_exact``) or a ``CheckpointError`` of one line.
"""
import inspect
from dataclasses import dataclass, field

from ..checkpoint import (SCALE_KEYS, CheckpointError, extract_state_dict, infer_scale, load_checkpoint,
                          load_state_dict_exact, weight_sets)

__all__ = ['Loaded', 'load_model', 'detect_arch']


@dataclass
class Loaded:
    model: object
    scale: int
    arch: str
    kwargs: dict = field(default_factory=dict)
    weights: str = ''
    pad_multiple: int = None  # H and W padded to a multiple of this before the network (None: its own)
    channels: int = 3  # colour channels the network takes and gives (1: gray networks)

    def describe(self):
        args = ', '.join(f'{k}={v}' for k, v in self.kwargs.items())
        return f'{self.arch}({args}) x{self.scale}, weights {self.weights or "state dict"}'


def _scale_of(kwargs, default=1):
    for key in SCALE_KEYS:
        value = kwargs.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def detect_arch(state_dict):
    """The id of the plugin's arch whose keys ``state_dict`` has (``'agile_ir.ESC'`` ...), or None."""
    from .. import spandrel_support
    for arch_id in spandrel_support.ARCH_IDS:
        _name, detect, _candidates, _purpose = spandrel_support.SPECS[arch_id]
        if detect(spandrel_support._our_weights(state_dict)):
            return arch_id
    return None


def _detected(state_dict, path, only=None):
    """Our archs from keys and shapes, others through spandrel; ``only``: the arch id it must be."""
    from .. import spandrel_support
    arch_id = detect_arch(state_dict)
    if only is not None and arch_id != only:
        name = spandrel_support.SPECS[only][0]
        raise CheckpointError(f'{path} does not hold {name} weights (its keys are not those of {name}); '
                              'check --arch, or leave it out to detect the architecture.')
    if arch_id is not None:
        try:
            kwargs, model = spandrel_support.infer(arch_id, state_dict)
        except ValueError as err:
            raise CheckpointError(f'{path}: {err}') from None
        purpose = spandrel_support.SPECS[arch_id][3]
        return model, (_scale_of(kwargs) if purpose == 'SR' else 1), spandrel_support.SPECS[arch_id][0], kwargs
    try:
        import spandrel
    except ImportError:
        raise CheckpointError(f'{path}: its keys are not those of ESC, ESCFP, AgileIR, Restormer+GLMHA or MST++; '
                              'name the network with --arch NAME (and --scale), or pip install spandrel to '
                              'detect other architectures.') from None
    try:
        desc = spandrel.ModelLoader().load_from_state_dict(state_dict)
    except Exception as err:  # spandrel raises UnsupportedModelError and others
        raise CheckpointError(f'{path}: spandrel cannot tell its architecture ({type(err).__name__}: '
                              f'{str(err).splitlines()[0][:160] if str(err) else "no detail"}); name it with '
                              '--arch NAME.') from None
    if (desc.input_channels, desc.output_channels) not in ((3, 3), (1, 1)):
        raise CheckpointError(f'{path}: a {desc.architecture.name} network with {desc.input_channels} input and '
                              f'{desc.output_channels} output channels; infer takes RGB or gray networks.')
    size = desc.size_requirements  # spandrel's own padding rule for the network
    if size.square:
        raise CheckpointError(f'{path}: {desc.architecture.name} takes square inputs only; infer does not pad to '
                              'squares.')
    return desc.model, int(desc.scale), f'{desc.architecture.name} (spandrel)', {
        'channels': desc.input_channels, 'pad_multiple': size.multiple_of if size.multiple_of > 1 else None}


def _built(arch, arch_args, scale, state_dict, path, used):
    from ..evaluation.loading import build_model
    if arch.lower() == 'bicubic':
        raise CheckpointError('--arch bicubic needs no checkpoint (it is the leaderboard baseline).')

    def build(s):
        return build_model(arch, s, **dict(arch_args))

    try:
        cls = type(build(scale))
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    except TypeError as err:
        raise CheckpointError(f'--arch {arch}: bad constructor arguments {dict(arch_args)}: {err}') from None
    takes_scale = any(k in inspect.signature(cls).parameters for k in SCALE_KEYS)
    if scale is None and takes_scale and _scale_of(arch_args, None) is None:
        scale = infer_scale(build, state_dict, current=None)  # None: the class default (the load then says why)
    model = build(scale)
    own = _scale_of({k: getattr(model, k, None) for k in SCALE_KEYS}, None) or _scale_of(arch_args, None) or scale
    load_state_dict_exact(model, state_dict, path, used, build=build if takes_scale else None, scale=own)
    return model, own or 1, arch, dict(arch_args)


def _window_of(arch, kwargs):
    """A named network's ``window_size`` as the multiple to pad to (as BasicSR's ``SwinIRModel`` and the
    leaderboard do): a BasicSR window transformer (SwinIR, HAT ...) needs it; our archs pad themselves."""
    from ..archs import ARCHS
    window = kwargs.get('window_size')
    return window if arch not in ARCHS and isinstance(window, int) and window > 1 else None


def _channels_of(kwargs):
    """1 for a network named with one input channel (``in_chans`` / ``num_in_ch`` ... = 1), else 3."""
    keys = ('in_chans', 'num_in_ch', 'in_channels', 'inp_channels', 'in_nc')
    return 1 if any(kwargs.get(k) == 1 for k in keys) else 3


def _our_arch_id(arch):
    from .. import spandrel_support
    return next((i for i, spec in spandrel_support.SPECS.items() if spec[0] == arch or i == arch), None)


def load_model(checkpoint, arch=None, scale=None, arch_args=None, param_key=None):
    """See the module docstring; raises ``CheckpointError`` (one line) for anything that does not fit."""
    path = str(checkpoint)
    ckpt = load_checkpoint(path)
    if param_key is None and 'params_ema' in weight_sets(ckpt, path):
        param_key = 'params_ema'
    state_dict, used = extract_state_dict(ckpt, param_key, path)
    ours = _our_arch_id(arch) if arch and not arch_args else None
    if ours:  # our arch named without arguments: its configuration read from the shapes
        model, found_scale, name, kwargs = _detected(state_dict, path, only=ours)
    elif arch:
        model, found_scale, name, kwargs = _built(arch, arch_args or {}, scale, state_dict, path, used)
    else:
        model, found_scale, name, kwargs = _detected(state_dict, path)
    if scale is not None and found_scale != scale:
        raise CheckpointError(f'{path} is a x{found_scale} {name} checkpoint, not x{scale}: drop --scale or use a '
                              f'x{scale} checkpoint (infer never rescales a checkpoint of another scale).')
    if arch:
        pad, channels = (None if ours else _window_of(arch, kwargs)), _channels_of(kwargs)
    else:  # spandrel's channels and size rule (ours: RGB, any size)
        pad, channels = kwargs.pop('pad_multiple', None), kwargs.pop('channels', 3)
    return Loaded(model.eval(), found_scale, name, kwargs, used, pad, channels)

"""Loading ``path.pretrain_network_<net>`` in training: the whole checkpoint or an error, resized only
when the options ask.

``ExactPretrainedLoads`` is a mixin that ``loop.build_training_model`` puts in front of the model
class.  Its ``load_network`` replaces BasicSR's (``torch.load`` + ``load_state_dict``) with the
plugin's converter: ``weights_only`` loading, every checkpoint layout (BasicSR, official, MMagic,
bare), every tensor loaded or one ``CheckpointError`` line.  A checkpoint of another scale is made
to fit (``net.resize_state_dict``: ESC / ESCFP's sub-pixel ``to_img``, the paper's x2 -> x3/x4
recipe) only when ``train.resize_pretrain_<net>: true`` names this network; the preflight has
already refused every other case before anything was written.
"""
from ..checkpoint import extract_state_dict, load_checkpoint, load_state_dict_exact


class ExactPretrainedLoads:
    def _resize_asked(self, load_path):
        paths, train = self.opt.get('path') or {}, self.opt.get('train') or {}
        return any(paths.get(key) == load_path and train.get(f'resize_pretrain_{key[len("pretrain_network_"):]}')
                   is True for key in paths if key.startswith('pretrain_network_'))

    def load_network(self, net, load_path, strict=True, param_key='params'):
        from basicsr.utils import get_root_logger
        net = self.get_bare_model(net)
        ckpt = load_checkpoint(load_path)
        if param_key == 'params_ema' and isinstance(ckpt, dict) and 'params_ema' not in ckpt and 'params' in ckpt:
            get_root_logger().info('Loading: params_ema does not exist, use params.')  # BasicSR's EMA start
            param_key = 'params'
        state_dict, used = extract_state_dict(ckpt, param_key, path=load_path)
        if self._resize_asked(load_path) and hasattr(net, 'resize_state_dict'):
            state_dict = net.resize_state_dict(state_dict)
        if strict:
            load_state_dict_exact(net, state_dict, load_path, used)
        else:  # strict_load_*: false in the options: BasicSR's partial load, which says what it skipped
            self._print_different_keys_loading(net, state_dict, strict)
            net.load_state_dict(state_dict, strict=False)
        get_root_logger().info(f'Loading {net.__class__.__name__} model from {load_path}, with param key: [{used}].')

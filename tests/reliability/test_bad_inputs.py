"""Bad inputs end the run before anything is written, with one ``error: ...`` line per problem naming
the file, what was expected and what was found.  Each test runs ``tools/train.py``'s ``main`` in-process and
checks the message, that it is one line (SystemExit with a string: no traceback), and that every
file under the working directory -- data, an existing experiment with a checkpoint -- is
byte-for-byte untouched (BasicSR would otherwise have archived the experiment folder)."""
import importlib

import cv2
import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, dump_yaml, run_tool, write_sr_pairs
from trainproc import tiny_sr_options

from agile_ir_plugin.basicsr.preflight import PreflightError, _build, run_preflight
from agile_ir_plugin.basicsr.preflight_data import check_datasets
from agile_ir_plugin.basicsr.preflight_options import Findings, check_keys


def problems_of(opt, **kw):
    with pytest.raises(PreflightError) as exc:
        run_preflight(opt, **kw)
    return exc.value.problems


def _train_main():
    module = importlib.import_module('agile_ir_plugin.cli.train')
    return module.main


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture
def case(tmp_path, monkeypatch):
    """Data, tiny options and an existing experiment (with a checkpoint) in tmp_path."""
    monkeypatch.chdir(tmp_path)
    data = write_sr_pairs(tmp_path / 'data', 4, n=3, size=(64, 64))
    existing = tmp_path / 'experiments' / 'bad' / 'models'
    existing.mkdir(parents=True)
    torch.save({'params': {'w': torch.ones(3)}}, existing / 'net_g_5.pth')
    return tmp_path, data, tiny_sr_options(data, 'bad', 2)


def expect_error(root, opt, *fragments):
    yml = dump_yaml(opt, root / 'opt.yml')
    before = snapshot(root)
    with pytest.raises(SystemExit) as exc:
        _train_main()(['-opt', str(yml)])
    msg = exc.value.code
    assert isinstance(msg, str) and msg.startswith('error: ') and msg.count('error: ') == len(msg.splitlines()), msg
    assert 'Traceback' not in msg
    for fragment in fragments:
        assert fragment in msg, f'{fragment!r} not in {msg!r}'
    assert snapshot(root) == before  # nothing written, moved or changed
    return msg


def test_missing_dataset_folder(case):
    root, data, opt = case
    opt['datasets']['train']['dataroot_lq'] = str(data / 'LR_bicubic' / 'X3')
    expect_error(root, opt, 'datasets.train.dataroot_lq: expected an existing folder', "X3' (not found)")


def test_lr_name_mismatch_names_both_files(case):
    root, data, opt = case
    lr = data / 'LR_bicubic' / 'X4'
    (lr / 'img1x4.png').rename(lr / 'img1_x4.png')
    expect_error(root, opt, f"no LR image for HR '{data / 'HR' / 'img1.png'}'", f"expected '{lr / 'img1x4.png'}'",
                 "got 'img1_x4.png'", "filename_tmpl '{}x4'")


def test_lr_size_not_hr_over_scale(case):
    root, data, opt = case
    lr = data / 'LR_bicubic' / 'X4' / 'img2x4.png'
    cv2.imwrite(str(lr), np.zeros((16, 17, 3), np.uint8))
    expect_error(root, opt, f"HR '{data / 'HR' / 'img2.png'}' is 64x64", 'LR at x4 should be 16x16', 'got 17x16',
                 str(lr))


def test_truncated_png(case):
    root, data, opt = case
    hr = data / 'HR' / 'img0.png'
    hr.write_bytes(hr.read_bytes()[:300])
    expect_error(root, opt, f"{hr}: expected a complete image, got a truncated or corrupt file (300 bytes")


def test_non_image_file_in_folder(case):
    root, data, opt = case
    (data / 'HR' / 'notes.txt').write_text('downloaded from ...')
    expect_error(root, opt, f"{data / 'HR' / 'notes.txt'}: expected an image BasicSR can read",
                 'got a file that is not one', 'remove it')


def test_image_smaller_than_patch(case):
    root, data, opt = case
    opt['datasets']['train']['gt_size'] = 96
    expect_error(root, opt, f"{data / 'HR' / 'img0.png'}' is 64x64, smaller than the training patch gt_size=96",
                 'expected at least 96x96')


def _save_swinir(path, upscale, key='params', prefix=''):
    net_opt = dict(tiny_sr_options('.', 'x', 1)['network_g'], upscale=upscale)
    sd = {prefix + k: v for k, v in _build(net_opt).state_dict().items()}
    torch.save({key: sd}, path)
    return path


def test_checkpoint_trained_for_another_scale(case):
    root, data, opt = case
    opt['path']['pretrain_network_g'] = str(_save_swinir(root / 'x2.pth', 2))
    expect_error(root, opt, 'path.pretrain_network_g:', "x2.pth' [params] is a x2 checkpoint, the options say x4 "
                 '(network_g.upscale)', 'train.resize_pretrain_g: true')


def test_checkpoint_with_params_ema_only(case):
    root, data, opt = case
    opt['path']['pretrain_network_g'] = str(_save_swinir(root / 'ema.pth', 4, key='params_ema'))
    opt['path']['param_key_g'] = 'params'
    expect_error(root, opt, "has no 'params' weights that BasicSR can load (it holds params_ema)",
                 'set path.param_key_g to one of those')


def test_checkpoint_with_a_key_prefix(case):
    root, data, opt = case
    opt['path']['pretrain_network_g'] = str(_save_swinir(root / 'pref.pth', 4, prefix='model.'))
    expect_error(root, opt, 'does not fit network_g (SwinIR): missing keys', "unexpected keys 'model.")


def test_checkpoint_of_another_config_lists_keys(case):
    root, data, opt = case
    net_opt = dict(opt['network_g'], depths=[2, 2], num_heads=[2, 2])
    torch.save({'params': _build(net_opt).state_dict()}, root / 'deep.pth')
    opt['path']['pretrain_network_g'] = str(root / 'deep.pth')
    expect_error(root, opt, "unexpected keys 'layers.1.", 'the network options (depths, dims')


def test_module_prefix_is_accepted_and_an_absent_param_key_is_refused(case):
    """No false alarm where BasicSR copes ('module.' is stripped); but a requested params_ema that is
    absent is an error, not BasicSR's silent fallback to params."""
    root, data, opt = case
    opt['path']['pretrain_network_g'] = str(_save_swinir(root / 'ddp.pth', 4, prefix='module.'))
    assert run_preflight(opt) == []
    opt['path']['param_key_g'] = 'params_ema'
    assert problems_of(opt) == [f"path.pretrain_network_g: '{root / 'ddp.pth'}' has no 'params_ema' weights that "
                                'BasicSR can load (it holds params); set path.param_key_g to one of those.']


def test_arch_option_typo_is_an_error_for_a_closed_signature(case):
    root, data, opt = case
    opt['network_g'] = {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_fet': 8, 'num_block': 1,
                        'upscale': 4}
    expect_error(root, opt, "network_g.num_fet: MSRResNet has no option 'num_fet'; did you mean 'num_feat'?")


def test_option_key_typos_are_errors_with_the_closest_key_and_known_options_are_not():
    """Before: warnings only, and `use_hflp` ended blaming a good image (KeyError: 'use_hflip')."""
    opt = tiny_sr_options('.', 'typo', 2)
    opt['datasets']['train']['use_hflp'] = True
    opt['train']['total_iters'] = 5
    opt['logger']['save_checkpoint_frq'] = 5
    opt['train']['optim_g']['weight_decy'] = 0.0
    opt['network_g']['embd_dim'] = 8  # SwinIR takes **kwargs: it would ignore it silently
    opt['my_own_key'] = 1  # far from every known key: a warning (a user's component may read it)
    f = Findings()
    check_keys(opt, f)
    from agile_ir_plugin.basicsr.preflight import build_networks
    from agile_ir_plugin.basicsr.preflight_options import check_training_values
    check_training_values(opt, f)
    build_networks(opt, f)
    assert set(f.problems) == {
        "datasets.train.use_hflp: unknown option; did you mean 'use_hflip'?",
        "train.total_iters: unknown option; did you mean 'total_iter'?",
        "logger.save_checkpoint_frq: unknown option; did you mean 'save_checkpoint_freq'?",
        "train.optim_g.weight_decy: AdamW has no option 'weight_decy'; did you mean 'weight_decay'?",
        "network_g.embd_dim: SwinIR has no option 'embd_dim'; did you mean 'embed_dim'?"}
    assert f.warnings == ['my_own_key: no component of BasicSR or this plugin reads this option (ignored).']
    fine = Findings()
    check_keys(tiny_sr_options('.', 'fine', 2), fine)
    assert (fine.problems, fine.warnings) == ([], [])
    # no false alarm on the repository's own recipes
    import yaml
    for path in sorted((REPO_ROOT / 'options').glob('*.yml')):
        found = Findings()
        check_keys(yaml.safe_load(path.read_text()), found)
        assert (found.problems, found.warnings) == ([], []), path.name


def _write(path, img):
    assert cv2.imwrite(str(path), img)


def test_grayscale_rgba_and_16bit_pngs_load_as_basicsr_reads_them(tmp_path):
    """Decision: accepted, read exactly as BasicSR reads them (cv2.IMREAD_COLOR): grayscale becomes 3
    equal channels, alpha is dropped, 16-bit keeps its top 8 bits.  The last two are named in a
    warning (alpha/precision lost); grayscale is silent (nothing is lost for an RGB network)."""
    from basicsr.data.paired_image_dataset import PairedImageDataset
    data = write_sr_pairs(tmp_path, 4, n=3, size=(32, 32))
    hr, lr = data / 'HR', data / 'LR_bicubic' / 'X4'
    rng = np.random.default_rng(0)
    gray = (rng.random((32, 32)) * 255).astype(np.uint8)
    _write(hr / 'img0.png', gray)
    _write(lr / 'img0x4.png', gray[::4, ::4])
    rgba = (rng.random((32, 32, 4)) * 255).astype(np.uint8)
    _write(hr / 'img1.png', rgba)
    deep = (rng.random((32, 32, 3)) * 65535).astype(np.uint16)
    _write(hr / 'img2.png', deep)
    opt = tiny_sr_options(data, 'modes', 1)
    ds = dict(opt['datasets']['train'], gt_size=32, scale=4, phase='train', use_hflip=False, use_rot=False)
    problems, warnings = [], []
    check_datasets({**opt, 'datasets': {'train': ds}}, problems, warnings)
    assert problems == []
    assert len(warnings) == 2
    assert 'alpha channel' in warnings[0] and str(hr / 'img1.png') in warnings[0] and 'img0' not in warnings[0]
    assert '16-bit' in warnings[1] and str(hr / 'img2.png') in warnings[1] and 'img0' not in warnings[1]

    dataset = PairedImageDataset(ds)
    order = [int(p['gt_path'][-5]) for p in dataset.paths]
    samples = {i: dataset[k]['gt'] for k, i in enumerate(order)}  # CHW RGB float in [0, 1]
    for i, expected_bgr in ((0, np.repeat(gray[..., None], 3, 2)), (1, rgba[..., :3]),
                            (2, (deep >> 8).astype(np.uint8))):
        expected = torch.from_numpy(expected_bgr[..., ::-1].astype(np.float32) / 255).permute(2, 0, 1)
        assert torch.allclose(samples[i], expected), i


def test_file_broken_after_the_preflight_is_named_at_load_time(case):
    """preflight: false (or a file damaged mid-run): the loader names the files instead of BasicSR's
    "'NoneType' object has no attribute 'astype'"."""
    root, data, opt = case
    opt['datasets']['train']['preflight'] = False
    opt['datasets']['train']['dataset_enlarge_ratio'] = 1
    opt['datasets']['train']['batch_size_per_gpu'] = 3
    hr = data / 'HR' / 'img1.png'
    hr.write_bytes(hr.read_bytes()[:300])
    yml = dump_yaml(opt, root / 'opt.yml')
    with pytest.raises(SystemExit) as exc:
        _train_main()(['-opt', str(yml), '--auto_resume'])
    msg = exc.value.code
    assert msg.startswith('error: ') and '\n' not in msg
    assert str(hr) in msg and 'could not be loaded as a training sample' in msg and 'astype' in msg
    # the run had started: BasicSR archived the earlier experiment (no training state in it), nothing lost
    assert len(list((root / 'experiments').glob('bad_archived_*/models/net_g_5.pth'))) == 1


@pytest.mark.slow
def test_validation_error_from_the_command_line_is_one_line_and_exit_code_1(case):
    root, data, opt = case
    opt['datasets']['train']['dataroot_gt'] = str(root / 'nowhere')
    r = run_tool('train', ['-opt', str(dump_yaml(opt, root / 'opt.yml'))], cwd=root)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (f"error: datasets.train.dataroot_gt: expected an existing folder, "
                                                 f"got '{root / 'nowhere'}' (not found); fix the path in the "
                                                 'options file.')
    assert 'Traceback' not in r.stderr

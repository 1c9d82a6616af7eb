"""tools/infer.py (``agile_ir_plugin.cli.infer.main`` in-process) and ``agile_ir_plugin.infer``.

References: the network's own forward pass on the same pixels (outputs), a whole-image forward
pass (tiles), OpenCV's bicubic (alpha), the 8-bit file of the same picture (16-bit files)."""
import cv2
import numpy as np
import pytest
import torch

import agile_ir_plugin  # noqa: F401  (registration before BasicSR archs are named)
from agile_ir_plugin.archs import ESCFP
from agile_ir_plugin.cli.infer import main
from agile_ir_plugin.infer import Upscaler, load_model


def tiny_escfp(scale=3):
    torch.manual_seed(0)
    return ESCFP(dim=16, pdim=8, n_blocks=1, conv_blocks=1, window_size=8, num_heads=2, upscaling_factor=scale).eval()


def tiny_compact(scale=4):
    """BasicSR's SRVGGNetCompact: convolutions only (receptive-field radius 4 LR pixels)."""
    from basicsr.archs.srvgg_arch import SRVGGNetCompact
    torch.manual_seed(0)
    net = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=scale, act_type='prelu').eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


@pytest.fixture
def escfp_ckpt(tmp_path):
    net = tiny_escfp()
    path = tmp_path / 'escfp_x3.pth'
    torch.save({'params': net.state_dict()}, path)
    return net, path


def reference(net, rgb):
    """The network's output for an HxWx3 RGB float image, as HxWx3 float64."""
    with torch.no_grad():
        out = net(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()[None])
    return out[0].double().numpy().transpose(1, 2, 0)


def to8(x):
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def test_odd_sizes_arch_and_scale_from_the_checkpoint(tmp_path, escfp_ckpt, capsys):
    net, ckpt = escfp_ckpt
    rng = np.random.default_rng(0)
    folder = tmp_path / 'in'
    folder.mkdir()
    images = {'a': rng.integers(0, 256, (17, 23, 3), dtype=np.uint8), 'b': rng.integers(0, 256, (9, 31, 3), dtype=np.uint8)}
    for name, img in images.items():
        cv2.imwrite(str(folder / f'{name}.png'), img)
    assert main([str(folder), '-c', str(ckpt), '-o', str(tmp_path / 'out')]) == 0
    out = capsys.readouterr().out
    assert 'ESCFP(dim=16' in out and 'x3' in out and '2 of 2 image(s) upscaled' in out
    for name, img in images.items():
        got = cv2.imread(str(tmp_path / 'out' / f'{name}.png'), cv2.IMREAD_UNCHANGED)
        h, w = img.shape[:2]
        assert got.shape == (3 * h, 3 * w, 3)
        want = to8(reference(net, img[..., ::-1].astype(np.float32) / 255))[..., ::-1]
        assert np.abs(got.astype(int) - want).max() <= 1


def test_tiled_equals_whole_image_for_a_convolution_only_model(tmp_path):
    net = tiny_compact()
    ckpt = tmp_path / 'compact.pth'
    torch.save({'params': net.state_dict()}, ckpt)
    loaded = load_model(ckpt, arch='SRVGGNetCompact', arch_args={'num_feat': 8, 'num_conv': 2, 'act_type': 'prelu'})
    assert loaded.scale == 4  # not given: the scale whose network has exactly these shapes
    rgb = np.random.default_rng(1).random((37, 45, 3)).astype(np.float32)
    whole = Upscaler(loaded).rgb(rgb)
    calls = []
    handle = loaded.model.register_forward_hook(lambda *a: calls.append(1))
    # each output pixel comes from a tile where it lies (overlap - blend) / 2 = (16 - 8) / 2 = 4 LR pixels
    # inside, the receptive-field radius: the blend of tiles is the whole-image output
    tiled = Upscaler(loaded, tile=24, tile_overlap=16).rgb(rgb)
    handle.remove()
    assert len(calls) == 3 * 4  # really tiled: LR starts 0, 8, 13 x 0, 8, 16, 21
    assert tiled.shape == whole.shape == (148, 180, 3)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    np.testing.assert_allclose(whole, reference(net, rgb), atol=1e-5)


def test_gray_rgba_and_16_bit_keep_their_layout_and_depth(tmp_path, escfp_ckpt):
    net, ckpt = escfp_ckpt
    rng = np.random.default_rng(2)
    folder = tmp_path / 'in'
    folder.mkdir()
    gray8 = rng.integers(0, 256, (11, 14), dtype=np.uint8)
    bgra8 = rng.integers(0, 256, (10, 13, 4), dtype=np.uint8)
    bgr8 = rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / 'gray8.png'), gray8)
    cv2.imwrite(str(folder / 'gray16.png'), gray8.astype(np.uint16) * 257)  # the same picture in 16 bit
    cv2.imwrite(str(folder / 'bgra8.png'), bgra8)
    cv2.imwrite(str(folder / 'bgr8.png'), bgr8)
    cv2.imwrite(str(folder / 'bgr16.tif'), bgr8.astype(np.uint16) * 257)
    assert main([str(folder), '-c', str(ckpt), '-o', str(tmp_path / 'out')]) == 0

    def read(name):
        return cv2.imread(str(tmp_path / 'out' / name), cv2.IMREAD_UNCHANGED)

    # gray in, gray out: the mean of the network's three channels for the replicated gray image
    g8 = read('gray8.png')
    assert g8.shape == (33, 42) and g8.dtype == np.uint8
    want = reference(net, np.repeat(gray8[..., None], 3, 2).astype(np.float32) / 255).mean(2)
    assert np.abs(g8.astype(int) - to8(want)).max() <= 1
    # 16 bit in, 16 bit out, the same picture as the 8-bit file (and finer than 8 bit)
    g16 = read('gray16.png')
    assert g16.shape == (33, 42) and g16.dtype == np.uint16
    assert np.abs(g16 / 257.0 - g8).max() <= 1
    assert np.any(g16 % 257 != 0)
    c16 = read('bgr16.png')
    assert c16.shape == (36, 27, 3) and c16.dtype == np.uint16
    assert np.abs(c16 / 257.0 - read('bgr8.png')).max() <= 1
    # RGBA: colour through the network, alpha apart with bicubic
    rgba = read('bgra8.png')
    assert rgba.shape == (30, 39, 4) and rgba.dtype == np.uint8
    colour = to8(reference(net, bgra8[..., 2::-1].astype(np.float32) / 255))[..., ::-1]
    assert np.abs(rgba[..., :3].astype(int) - colour).max() <= 1
    alpha = cv2.resize(bgra8[..., 3].astype(np.float32) / 255, (39, 30), interpolation=cv2.INTER_CUBIC)
    assert np.abs(rgba[..., 3].astype(int) - to8(alpha)).max() <= 1


def test_unreadable_files_one_line_each_and_the_rest_go_on(tmp_path, escfp_ckpt, capsys):
    _, ckpt = escfp_ckpt
    folder = tmp_path / 'in'
    folder.mkdir()
    cv2.imwrite(str(folder / 'good.png'), np.full((8, 8, 3), 128, np.uint8))
    (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    (folder / 'empty.jpg').write_bytes(b'')
    (folder / 'notes.txt').write_text('not an image, not an image extension: skipped')
    assert main([str(folder), '-c', str(ckpt), '-o', str(tmp_path / 'out')]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith('error:')]
    assert len(errors) == 2 and 'broken.png' in errors[0] and 'empty.jpg' in errors[1], captured.err
    assert 'Traceback' not in captured.err
    assert '1 of 3 image(s) upscaled; 2 failed' in captured.out
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['good.png']


def test_bad_checkpoint_or_arguments_stop_before_anything_is_written(tmp_path, escfp_ckpt, capsys):
    _, ckpt = escfp_ckpt
    img = tmp_path / 'a.png'
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / 'out'
    cases = [
        (['-c', str(tmp_path / 'missing.pth')], 'checkpoint not found'),
        (['-c', str(ckpt), '--scale', '2'], 'is a x3 ESCFP checkpoint, not x2'),
        (['-c', str(ckpt), '--arch', 'ESC'], 'does not hold ESC weights'),
        (['-c', str(ckpt), '--arch', 'SRVGGNetCompact'], 'does not fit SRVGGNetCompact'),
        (['-c', str(ckpt), '--param-key', 'params_ema'], "has no 'params_ema' weights"),
        (['-c', str(ckpt), '--tile', '16', '--tile-overlap', '16'], '--tile 16 must be larger'),
        (['-c', str(ckpt), '--arch-arg', 'dim'], 'expected KEY=VALUE'),
    ]
    for args, message in cases:
        assert main([str(img), '-o', str(out), *args]) == 1
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], (args, err)
    assert main([str(tmp_path / 'nothing_here'), '-c', str(ckpt), '-o', str(out)]) == 1
    assert 'no such file or folder' in capsys.readouterr().err
    assert not out.exists()


def test_spandrel_detects_other_archs_and_bf16_runs(tmp_path, capsys):
    pytest.importorskip('spandrel')
    net = tiny_compact(scale=2)
    ckpt = tmp_path / 'compact_x2.pth'
    torch.save({'params_ema': net.state_dict(), 'params': {k: v * 0 for k, v in net.state_dict().items()}}, ckpt)
    img = np.random.default_rng(3).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'a.png'), img)
    assert main([str(tmp_path / 'a.png'), '-c', str(ckpt), '-o', str(tmp_path / 'fp32.png')]) == 0
    assert 'x2, weights params_ema' in capsys.readouterr().out  # EMA weights by default
    want = to8(reference(net, img[..., ::-1].astype(np.float32) / 255))[..., ::-1]
    fp32 = cv2.imread(str(tmp_path / 'fp32.png'))
    assert np.abs(fp32.astype(int) - want).max() <= 1
    assert main([str(tmp_path / 'a.png'), '-c', str(ckpt), '-o', str(tmp_path / 'bf16.png'), '--precision', 'bf16']) == 0
    bf16 = cv2.imread(str(tmp_path / 'bf16.png'))
    assert 0 < np.abs(bf16.astype(int) - fp32).mean() < 4  # bf16 really used, and close


def test_a_named_window_transformer_is_padded_to_its_window(tmp_path, capsys):
    """BasicSR's SwinIR named with --opt (its network_g) on a 17x23 image: padded to its window as
    BasicSR's SwinIRModel pads (was: 'shape ... is invalid' for that image); spandrel's SwinIR,
    which pads itself, gives the same pixels."""
    import yaml
    from basicsr.archs.swinir_arch import SwinIR
    net_opt = {'type': 'SwinIR', 'upscale': 2, 'in_chans': 3, 'img_size': 8, 'window_size': 4, 'img_range': 1.0,
               'depths': [2], 'embed_dim': 8, 'num_heads': [2], 'mlp_ratio': 2, 'upsampler': 'pixelshuffledirect',
               'resi_connection': '1conv'}
    torch.manual_seed(0)
    net = SwinIR(**{k: v for k, v in net_opt.items() if k != 'type'})
    torch.save({'params': net.state_dict()}, tmp_path / 'swinir.pth')
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump({'network_g': net_opt}))
    cv2.imwrite(str(tmp_path / 'a.png'), np.random.default_rng(4).integers(0, 256, (17, 23, 3), dtype=np.uint8))
    args = [str(tmp_path / 'a.png'), '-c', str(tmp_path / 'swinir.pth')]
    assert main([*args, '--opt', str(tmp_path / 'opt.yml'), '-o', str(tmp_path / 'named.png')]) == 0
    named = cv2.imread(str(tmp_path / 'named.png'))
    assert named.shape == (34, 46, 3)
    pytest.importorskip('spandrel')
    assert main([*args, '-o', str(tmp_path / 'detected.png')]) == 0
    assert 'SwinIR (spandrel)' in capsys.readouterr().out
    assert np.abs(cv2.imread(str(tmp_path / 'detected.png')).astype(int) - named).max() <= 1


def test_a_gray_network_gets_the_gray_level(tmp_path):
    """A one-channel network (SRVGGNetCompact num_in_ch=1, detected by spandrel): a gray file goes in as
    its gray level and comes out gray (was: a 3-channel input the network cannot take)."""
    pytest.importorskip('spandrel')
    from basicsr.archs.srvgg_arch import SRVGGNetCompact
    torch.manual_seed(0)
    net = SRVGGNetCompact(num_in_ch=1, num_out_ch=1, num_feat=8, num_conv=2, upscale=2).eval()
    torch.save({'params': net.state_dict()}, tmp_path / 'gray.pth')
    gray = np.random.default_rng(5).integers(0, 256, (9, 13), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'g.png'), gray)
    assert main([str(tmp_path / 'g.png'), '-c', str(tmp_path / 'gray.pth'), '-o', str(tmp_path / 'out.png')]) == 0
    got = cv2.imread(str(tmp_path / 'out.png'), cv2.IMREAD_UNCHANGED)
    with torch.no_grad():
        want = to8(net(torch.from_numpy(gray.astype(np.float32) / 255)[None, None])[0, 0].numpy())
    assert got.shape == (18, 26) and np.abs(got.astype(int) - want).max() <= 1

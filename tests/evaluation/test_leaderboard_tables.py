"""Leaderboard tables and pictures (issue #15 item 3) and the convention option (issue #18), through
``agile_ir_plugin.cli.leaderboard.main`` in-process on tiny datasets written here."""
import csv
import json
import math

import cv2
import numpy as np
import pytest
import torch

from basicsr.metrics import calculate_psnr

from agile_ir_plugin.cli.leaderboard import main as leaderboard
from agile_ir_plugin.evaluation import evaluate
from agile_ir_plugin.evaluation.visual import CAPTION_HEIGHT, detail_box


def _vgg_ckpt(path, seed, scale=2):
    from basicsr.archs.srvgg_arch import SRVGGNetCompact
    torch.manual_seed(seed)
    net = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=scale)
    with torch.no_grad():
        net.body[-1].weight.mul_(0.1)
    torch.save({'params': net.state_dict()}, path)
    return net


def test_bicubic_row_first_then_every_checkpoint_in_one_table(sr_pairs, tmp_path):
    root = sr_pairs(2, n=2, name='Tiny')
    nets = [_vgg_ckpt(tmp_path / f'{n}.pth', seed) for n, seed in (('a', 0), ('b', 1))]
    out = tmp_path / 'board'
    args = ['--arch', 'SRVGGNetCompact', '--arch-args', '{"num_feat": 8, "num_conv": 2}', '--scale', '2',
            '--ckpt', str(tmp_path / 'a.pth'), str(tmp_path / 'b.pth'), '--datasets', 'Tiny',
            '--root', str(root.parent), '--out', str(out), '--no-progress']
    assert leaderboard(args) == 0
    rows = json.loads((out / 'leaderboard.json').read_text())['rows']
    assert [r['model'] for r in rows] == ['bicubic', 'a', 'b']
    for row, net in zip(rows[1:], nets):
        expected = evaluate(net, ['Tiny'], scale=2, root=root.parent, progress=False)[0]
        assert row['psnr'] == pytest.approx(expected['psnr']) and row['ssim'] == pytest.approx(expected['ssim'])
    assert rows[0]['psnr'] == pytest.approx(evaluate('bicubic', ['Tiny'], scale=2, root=root.parent,
                                                     progress=False)[0]['psnr'])
    md = (out / 'leaderboard.md').read_text()
    for r in rows:
        assert f'| {r["model"]} | x2 | {r["psnr"]:.2f} / {r["ssim"]:.4f} |' in md
    assert leaderboard(args + ['--no-bicubic']) == 0
    assert [r['model'] for r in json.loads((out / 'leaderboard.json').read_text())['rows']] == ['a', 'b']


def test_visual_pictures_hold_the_same_crop_of_each_model_and_hr(sr_pairs, tmp_path):
    root = sr_pairs(2, n=2, size=(48, 64), name='Tiny')
    _vgg_ckpt(tmp_path / 'a.pth', 0)
    out = tmp_path / 'board'
    assert leaderboard(['--arch', 'SRVGGNetCompact', '--arch-args', '{"num_feat": 8, "num_conv": 2}',
                        '--scale', '2', '--ckpt', str(tmp_path / 'a.pth'), '--datasets', 'Tiny',
                        '--root', str(root.parent), '--out', str(out), '--no-progress', '--save-images',
                        '--visual', '--visual-crop', '32']) == 0
    pictures = sorted((out / 'visual' / 'Tiny' / 'X2').iterdir())
    assert [p.name for p in pictures] == ['img0.png', 'img1.png']
    for picture in pictures:
        img = cv2.imread(str(picture), cv2.IMREAD_COLOR)
        zoom, size, gap = 2, 32, 4
        assert img.shape == (CAPTION_HEIGHT + size * zoom, 3 * size * zoom + 2 * gap, 3)
        hr = cv2.imread(str(root / 'HR' / picture.name), cv2.IMREAD_COLOR)
        top, left, got = detail_box(hr, size)
        assert got == size
        crops = {'bicubic': cv2.imread(str(out / 'images' / 'bicubic' / 'Tiny' / 'X2' / picture.name)),
                 'a': cv2.imread(str(out / 'images' / 'a' / 'Tiny' / 'X2' / picture.name)), 'HR': hr}
        for i, name in enumerate(('bicubic', 'a', 'HR')):  # panel order: bicubic | model | HR
            x0 = i * (size * zoom + gap)
            panel = img[CAPTION_HEIGHT:, x0:x0 + size * zoom]
            expected = crops[name][top:top + size, left:left + size].repeat(zoom, 0).repeat(zoom, 1)
            np.testing.assert_array_equal(panel, expected)
            assert (img[:CAPTION_HEIGHT, x0:x0 + size * zoom] < 128).any()  # a caption is written


def test_visual_captions_carry_each_images_psnr(sr_pairs):
    from agile_ir_plugin.evaluation.visual import Comparison
    root = sr_pairs(2, n=2, name='Tiny')
    comparison = Comparison(crop=16)
    evaluate('bicubic', ['Tiny'], scale=2, root=root.parent, progress=False, on_image=comparison.hook('bicubic'))
    for (dataset, scale, stem), entry in comparison.images.items():
        (name, _, value), = entry['panels']
        hr = cv2.imread(str(root / 'HR' / f'{stem}.png'))
        lr = cv2.imread(str(root / 'LR_bicubic' / 'X2' / f'{stem}x2.png'))
        from agile_ir_plugin.evaluation import MatlabBicubic
        x = torch.from_numpy(lr[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
        sr = (MatlabBicubic(2)(x)[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()[..., ::-1]
        assert value == pytest.approx(calculate_psnr(sr, hr, 2, test_y_channel=True), abs=1e-9)


def test_convention_option_names_itself_and_moves_a_gray_image_by_1_32_db(tmp_path):
    rng = np.random.default_rng(0)
    gray = cv2.resize(rng.integers(30, 225, (12, 16)).astype(np.uint8), (64, 48), interpolation=cv2.INTER_CUBIC)
    (tmp_path / 'Gray' / 'HR').mkdir(parents=True)
    cv2.imwrite(str(tmp_path / 'Gray' / 'HR' / 'g.png'), gray)  # single channel; LR generated
    rows = {}
    for convention in ('basicsr', 'matlab'):
        out = tmp_path / convention
        assert leaderboard(['--arch', 'bicubic', '--scale', '2', '--datasets', 'Gray', '--root', str(tmp_path),
                            '--out', str(out), '--no-progress', '--convention', convention]) == 0
        (rows[convention],) = json.loads((out / 'leaderboard.json').read_text())['rows']
        with open(out / 'leaderboard.csv') as f:
            assert next(csv.DictReader(f))['convention'] == convention
        assert f'Convention: `{convention}`' in (out / 'leaderboard.md').read_text()
    # bicubic of a gray LR is gray: Y = 16 + 219/255 g scales every error by 219/255
    assert rows['basicsr']['psnr'] - rows['matlab']['psnr'] == pytest.approx(20 * math.log10(255 / 219), abs=1e-6)
    assert 'generated' in rows['basicsr']['lr_source']

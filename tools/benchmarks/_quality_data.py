"""The pairs of ``quality.py`` (each member's reduced configuration) and their data: the training
images (MATLAB-bicubic LR or the blurred image, as ``PAIRS[pair]['scale']`` says), the seeded batch
stream shared by every member of a pair, and the degraded test sets of the restoration proxy."""
import os
import zlib
from pathlib import Path

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
SETS = ['Set5', 'Set14', 'B100']
BLUR_SIGMA, BLUR_SIZE, NOISE_SIGMA = 1.6, 13, 2.0 / 255
EVAL_CROP = 160  # restoration proxy: central crop of each test image (a full-size Restormer pass per image is the 2-core budget)

# the same reduction for both members of a pair
SR_COMMON = dict(in_chans=3, img_size=32, window_size=8, img_range=1., depths=[2, 2], embed_dim=32,
                 num_heads=[4, 4], mlp_ratio=2, upsampler='pixelshuffledirect', resi_connection='1conv',
                 drop_path_rate=0.0)
RESTORMER_COMMON = dict(dim=16, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 4, 8])
PAIRS = {
    'sr': {'scale': 2, 'baseline': 'bicubic', 'reference': 'SwinIR-light',
           'models': {'SwinIR-light': ('swinir', SR_COMMON), 'AgileIR': ('AgileIR', SR_COMMON)}},
    'restormer': {'scale': 1, 'baseline': 'degraded input', 'reference': 'Restormer',
                  'models': {'Restormer': ('Restormer', RESTORMER_COMMON),
                             'Restormer+GLMHA (paper preset)': ('Restormer', dict(RESTORMER_COMMON, attn='glmha',
                                                                                  glmha_preset='paper')),
                             'Restormer+GLMHA (default)': ('Restormer', dict(RESTORMER_COMMON, attn='glmha'))}},
}


def _read_rgb(path):
    from agile_ir_plugin.evaluation.datasets import read_image
    return np.ascontiguousarray(read_image(path)[0][..., ::-1])  # uint8 RGB HWC


def _images(folder):
    from agile_ir_plugin.evaluation.datasets import IMAGE_EXTENSIONS
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) \
        if Path(folder).is_dir() else []
    if not files:
        raise FileNotFoundError(f'no training images in {folder}')
    return files


def _to_tensor(img):
    return torch.from_numpy(img).permute(2, 0, 1).float().div_(255)[None]


def blur(x):
    """Gaussian blur (sigma 1.6, 13x13 kernel, reflect border) of an NCHW batch."""
    r = BLUR_SIZE // 2
    g = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float64) ** 2 / (2 * BLUR_SIGMA ** 2))
    g = (g / g.sum()).to(x.dtype)
    c = x.shape[1]
    x = torch.nn.functional.pad(x, (r, r, r, r), mode='reflect')
    x = torch.nn.functional.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return torch.nn.functional.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def quantize(x):
    return x.clamp(0, 1).mul(255).round().div(255)


def load_training(pair, train_dirs):
    """[(input float CHW, target float CHW)] of every training image: the 8-bit MATLAB-bicubic LR
    and the mod-cropped HR (sr), or the blurred (noise-free) image and the clean one (restormer)."""
    from agile_ir_plugin.evaluation import MatlabBicubic
    scale = PAIRS[pair]['scale']
    data = []
    for folder in train_dirs:
        for path in _images(folder):
            img = _read_rgb(path)
            hr = _to_tensor(img[:img.shape[0] - img.shape[0] % scale, :img.shape[1] - img.shape[1] % scale])
            with torch.no_grad():
                inp = quantize(MatlabBicubic(1 / scale)(hr.double()).float()) if scale > 1 else blur(hr)
            data.append((inp[0], hr[0]))
    return data


def batches(data, pair, cfg, seed):
    """The seed's endless stream of (input, target) batches: random crops, flips, transposes (and
    for the restoration proxy fresh noise, rounded to 8 bit) — identical for every model."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    s, p = cfg['scale'], cfg['patch']
    while True:
        xs, ys = [], []
        for _ in range(cfg['batch']):
            inp, tgt = data[rng.integers(len(data))]
            i, j = rng.integers(inp.shape[1] - p + 1), rng.integers(inp.shape[2] - p + 1)
            x, y = inp[:, i:i + p, j:j + p], tgt[:, i * s:(i + p) * s, j * s:(j + p) * s]
            flips = [d for d, f in zip((1, 2), rng.integers(2, size=2)) if f]
            if flips:
                x, y = x.flip(flips), y.flip(flips)
            if rng.integers(2):
                x, y = x.transpose(1, 2), y.transpose(1, 2)
            xs.append(x)
            ys.append(y)
        x, y = torch.stack(xs), torch.stack(ys)
        if s == 1:
            x = quantize(x + torch.randn(x.shape, generator=gen) * NOISE_SIGMA)
        yield x.contiguous(), y.contiguous()


def _write_png(path, img):
    import cv2
    tmp = path.with_suffix('.tmp.png')
    cv2.imwrite(str(tmp), img)
    os.replace(tmp, path)


def degraded_sets(eval_root, sets, cache_dir, crop=EVAL_CROP):
    """Dataset dicts for ``evaluate`` at scale 1: the central ``crop`` x ``crop`` of each clean HR
    image (whole when smaller; single-channel files stay so) and its blurred + noisy 8-bit copy
    (blurred from the whole image, noise seeded by the file name), written once under ``cache_dir``."""
    from agile_ir_plugin.evaluation.datasets import read_image
    out = []
    for name in sets:
        root = Path(cache_dir) / f'blur{BLUR_SIGMA}_noise{NOISE_SIGMA * 255:g}_crop{crop}' / name
        (root / 'clean').mkdir(parents=True, exist_ok=True)
        (root / 'degraded').mkdir(parents=True, exist_ok=True)
        for path in _images(Path(eval_root) / name / 'HR'):
            target = root / 'degraded' / f'{path.stem}.png'
            if target.exists():
                continue
            bgr, gray = read_image(path)
            h, w = bgr.shape[:2]
            i, j = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
            box = (slice(i, i + crop), slice(j, j + crop))
            x = blur(_to_tensor(np.ascontiguousarray(bgr[..., ::-1])).double())[..., box[0], box[1]]
            gen = torch.Generator().manual_seed(zlib.crc32(path.stem.encode()))
            x = quantize(x + torch.randn(x.shape, generator=gen, dtype=torch.float64) * NOISE_SIGMA)
            img = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            clean = bgr[box]
            _write_png(root / 'clean' / f'{path.stem}.png', np.ascontiguousarray(clean[..., 0] if gray else clean))
            _write_png(target, np.ascontiguousarray(img[..., ::-1]))
        out.append({'name': name, 'hr': str(root / 'clean'), 'lr': str(root / 'degraded')})
    return out


def _eval_sets(pair, args):
    if PAIRS[pair]['scale'] == 1:
        return degraded_sets(args['eval_root'], args['sets'], args['cache_dir'], args['eval_crop'])
    return [str(Path(args['eval_root']) / name) for name in args['sets']]

"""Per-image comparison pictures for the leaderboard: bicubic | each model | HR, PSNR on each.

``Comparison`` collects, through ``evaluate(..., on_image=comparison.hook(model_name))``, one crop of
every scored image per model, then ``write(out_dir)`` makes one PNG per image
(``{dataset}/X{scale}/{image}.png``): the panels side by side in evaluation order with the HR crop
last, each under a caption with the model's name and its PSNR (dB, Y, the report's convention) on
the *whole* image.  The crop is the same for every model: the ``crop`` x ``crop`` HR window with the
most detail (largest sum of absolute Laplacian of the HR image's gray level, scanned on a grid of
half a crop), magnified ``zoom`` times with nearest neighbour so pixels stay visible.  Only crops are
kept in memory.
"""
from pathlib import Path

import cv2
import numpy as np

CAPTION_HEIGHT = 22


def detail_box(gt_img, crop):
    """(top, left, size) of the most detailed ``crop`` x ``crop`` window of an 8-bit BGR image."""
    h, w = gt_img.shape[:2]
    size = min(crop, h, w)
    energy = np.abs(cv2.Laplacian(cv2.cvtColor(gt_img, cv2.COLOR_BGR2GRAY).astype(np.float32), cv2.CV_32F))
    integral = cv2.integral(energy)  # (h+1, w+1): window sums in O(1)
    step = max(size // 2, 1)
    best = None
    for top in sorted({*range(0, h - size + 1, step), h - size}):
        for left in sorted({*range(0, w - size + 1, step), w - size}):
            total = (integral[top + size, left + size] - integral[top, left + size] - integral[top + size, left]
                     + integral[top, left])
            if best is None or total > best[0]:
                best = (total, top, left)
    return best[1], best[2], size


def _panel(img, name, value, zoom):
    """The magnified crop under a caption 'name PSNR dB' (the name shortened to fit the width)."""
    img = cv2.resize(img, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) if zoom != 1 else img
    bar = np.full((CAPTION_HEIGHT, img.shape[1], 3), 255, np.uint8)
    tail = f' {value:.2f} dB' if value is not None else ''
    for keep in range(len(name), 0, -1):
        caption = (name if keep == len(name) else name[:keep] + '..') + tail
        if cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0][0] <= img.shape[1] - 4:
            break
    cv2.putText(bar, caption, (2, CAPTION_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, img], axis=0)


class Comparison:
    """Collects crops of every model's output per image; ``write`` makes the comparison PNGs."""

    def __init__(self, crop=96, zoom=2, metric='psnr'):
        self.crop, self.zoom, self.metric = crop, zoom, metric
        self.images = {}  # (dataset, scale, stem) -> {'box', 'hr', 'panels': [(name, crop, value)]}

    def hook(self, model_name):
        """The ``on_image`` callback of ``evaluate`` for ``model_name``."""
        def on_image(dataset, scale, hr_path, sr_img, gt_img, scores):
            entry = self.images.get((dataset, scale, hr_path.stem))
            if entry is None:
                top, left, size = detail_box(gt_img, self.crop)
                entry = {'box': (top, left, size), 'hr': gt_img[top:top + size, left:left + size].copy(), 'panels': []}
                self.images[dataset, scale, hr_path.stem] = entry
            top, left, size = entry['box']
            value = scores.get(self.metric, scores.get(self.metric + '_rgb'))
            entry['panels'].append((model_name, sr_img[top:top + size, left:left + size].copy(), value))
        return on_image

    def write(self, out_dir):
        """One PNG per image under ``out_dir/{dataset}/X{scale}/``; returns the paths written."""
        paths = []
        for (dataset, scale, stem), entry in self.images.items():
            panels = [_panel(img, name, value, self.zoom) for name, img, value in entry['panels']]
            panels.append(_panel(entry['hr'], 'HR', None, self.zoom))
            gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
            row = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
            path = Path(out_dir) / dataset / f'X{scale}' / f'{stem}.png'
            path.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(path), row):
                raise OSError(f'could not write {path}')
            paths.append(path)
        return paths

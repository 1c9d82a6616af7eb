"""Writing leaderboard rows as Markdown (paper-style table + full rows + efficiency), CSV and JSON.

SR rows (``evaluation.evaluate``: PSNR / SSIM per model x dataset x scale) and spectral rows
(``evaluation.evaluate_spectral``: MRAE / RMSE / PSNR, recognised by their ``mrae`` key) each get
their own Markdown layout; CSV and JSON hold the rows' keys as they are.  One report holds one
kind of row.
"""
import csv
import json
import math
from pathlib import Path

CONVENTIONS = ('PSNR (dB) / SSIM on the Y channel (MATLAB rgb2ycbcr; RGB where the heading says so) of 8-bit '
               'outputs, border of `scale` pixels cropped, HR mod-cropped to the scale; BasicSR '
               '`calculate_psnr`/`calculate_ssim`.')


def convention_line(rows):
    """'Convention: ...' naming the grayscale convention of the rows (``metrics.CONVENTIONS``)."""
    from .metrics import CONVENTIONS as NAMED
    used = list(dict.fromkeys(r.get('convention', 'basicsr') for r in rows))
    return 'Convention: ' + '; '.join(f'`{c}` = {NAMED.get(c, c)}' for c in used) + '.'
SPECTRAL_CONVENTIONS = ('Spectral reconstruction from RGB (NTIRE 2022 / MST++ protocol): full images in (RGB min-max '
                        'normalised per image), MRAE / RMSE / PSNR (dB) of the float cubes averaged over the images, '
                        '`crop border` pixels removed from every side (NTIRE 2022 validation: 128); PSNR with data '
                        'range 1 on cubes clamped to [0, 1]; `calculate_mrae` / `calculate_rmse` / '
                        '`calculate_spectral_psnr`.  MRAE and RMSE: lower is better.')


def _fmt(value, digits):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 'n/a'
    return f'{value:.{digits}f}'


def _giga(value):
    return 'n/a' if value is None else f'{value / 1e9:.2f}'


def _paper_table(rows):
    datasets = list(dict.fromkeys(r['dataset'] for r in rows))
    keys = list(dict.fromkeys((r['model'], r['scale']) for r in rows))
    cell = {(r['model'], r['scale'], r['dataset']): r for r in rows}
    lines = ['| Model | Scale | ' + ' | '.join(datasets) + ' |', '|---|---|' + '---|' * len(datasets)]
    generated = False
    for model, scale in keys:
        cells = []
        for name in datasets:
            r = cell.get((model, scale, name))
            if r is None:
                cells.append('')
                continue
            mark = ''
            if str(r.get('lr_source', '')).startswith('LR generated'):
                mark, generated = ' †', True
            text = _fmt(r.get('psnr'), 2) + (f' / {_fmt(r["ssim"], 4)}' if r.get('ssim') is not None else '')
            cells.append(text + mark)
        lines.append(f'| {model} | x{scale} | ' + ' | '.join(cells) + ' |')
    if generated:
        lines += ['', '† LR generated on the fly from the HR images with BasicSR\'s MATLAB-compatible bicubic '
                  '`imresize`.']
    return '\n'.join(lines)


def _rows_table(rows):
    extra = [k for k in ('psnr_rgb', 'ssim_rgb', 'lpips') if any(k in r for r in rows)]
    head = ['model', 'dataset', 'scale', 'PSNR', 'SSIM', *extra, 'images', 'model s', 'metric s', 'LR']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        values = [r['model'], r['dataset'], f'x{r["scale"]}', _fmt(r.get('psnr'), 2), _fmt(r.get('ssim'), 4)]
        values += [_fmt(r.get(k), 4 if k != 'psnr_rgb' else 2) for k in extra]
        values += [str(r.get('n_images', '')), _fmt(r.get('time_model_s'), 2), _fmt(r.get('time_metric_s'), 2),
                   'generated' if str(r.get('lr_source', '')).startswith('LR generated') else 'files']
        lines.append('| ' + ' | '.join(values) + ' |')
    notes = sorted({r['lpips_note'] for r in rows if r.get('lpips_note')})
    if notes:
        lines += [''] + [f'LPIPS: {note}' for note in notes]
    return '\n'.join(lines)


def _efficiency_table(rows, spectral=False):
    seen = {}
    for r in rows:
        if 'params' in r:
            seen.setdefault((r['model'], r['scale']), r)
    if not seen:
        return ''
    if spectral:  # scale 1, RGB in: no scale column, inputs named as what they are
        lines = ['| Model | Params | MACs RGB 256² (G) | MACs RGB 1280×720 (G) | Latency (ms) | Peak memory (MB) '
                 '| Device |',
                 '|---|---|---|---|---|---|---|']
    else:
        lines = ['| Model | Scale | Params | MACs LR 256² (G) | MACs 1280×720 out (G) | Latency (ms) '
                 '| Peak memory (MB) | Device |',
                 '|---|---|---|---|---|---|---|---|']
    for (model, scale), r in seen.items():
        lead = f'| {model} |' if spectral else f'| {model} | x{scale} |'
        lines.append(f'{lead} {r["params"]:,} | {_giga(r.get("macs_lr256"))} '
                     f'| {_giga(r.get("macs_720p"))} '
                     f'| {_fmt(r.get("latency_ms"), 1)} | {_fmt(r.get("memory_mb"), 1)} | {r.get("device_name", "")} |')
    notes = sorted({r['memory_note'] for r in seen.values() if r.get('memory_note')})
    lines += ['', 'MACs by torch.utils.flop_counter (convolutions, matmuls, attention); FLOPs = 2 x MACs. '
              'Latency: ' + next(iter(seen.values())).get('latency_input', 'n/a') + '.']
    lines += [f'Memory: {note}.' for note in notes]
    return '\n'.join(lines)


def _spectral_table(rows):
    """One line per model x dataset, paper precision: MRAE and RMSE 4 decimals, PSNR 2."""
    lines = ['| Model | Dataset | MRAE ↓ | RMSE ↓ | PSNR (dB) ↑ | Images | Crop border | Time (s) |',
             '|---|---|---|---|---|---|---|---|']
    for r in rows:
        crop = r.get('crop_border')
        lines.append(f'| {r["model"]} | {r["dataset"]} | {_fmt(r.get("mrae"), 4)} | {_fmt(r.get("rmse"), 4)} '
                     f'| {_fmt(r.get("psnr"), 2)} | {r.get("n_images", "")} | {"" if crop is None else crop} '
                     f'| {_fmt(r.get("seconds"), 2)} |')
    return '\n'.join(lines)


def is_spectral(rows):
    """True for spectral rows (``mrae`` key), False for SR rows; ValueError when both kinds are mixed."""
    kinds = {'mrae' in r for r in rows}
    if len(kinds) > 1:
        raise ValueError('one report cannot mix spectral rows (MRAE / RMSE / PSNR) with SR rows (PSNR / SSIM); '
                         'write them to separate reports')
    return kinds == {True}


def markdown(rows, meta=None):
    spectral = is_spectral(rows)
    parts = []
    if meta:
        parts.append('  \n'.join(f'{k.capitalize()}: {("`" + v + "`") if k == "command" else v}'
                                 for k, v in meta.items() if v is not None))
    if spectral:
        parts += [SPECTRAL_CONVENTIONS, '### MRAE / RMSE / PSNR', _spectral_table(rows)]
    else:
        rgb = list(dict.fromkeys(r['model'] for r in rows if r.get('channel') == 'RGB'))
        channel = ('RGB' if len(rgb) == len({r['model'] for r in rows}) else
                   f'Y; RGB for {", ".join(rgb)}') if rgb else 'Y'
        parts += [CONVENTIONS + '  \n' + convention_line(rows), f'### PSNR / SSIM ({channel})', _paper_table(rows),
                  '### All rows', _rows_table(rows)]
    eff = _efficiency_table(rows, spectral)
    if eff:
        parts += ['### Efficiency', eff]
    return '\n\n'.join(parts) + '\n'


def write_report(rows, out_dir, basename='leaderboard', meta=None):
    """Write ``{basename}.md``, ``.csv`` and ``.json`` to ``out_dir``; returns the three paths.

    ``rows``: all SR rows or all spectral rows (ValueError, before anything is written, if mixed)."""
    is_spectral(rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f'{basename}.{ext}' for ext in ('md', 'csv', 'json')}
    paths['md'].write_text(markdown(rows, meta))
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(paths['csv'], 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    paths['json'].write_text(json.dumps({'meta': meta or {}, 'rows': rows}, indent=2, default=str) + '\n')
    return paths

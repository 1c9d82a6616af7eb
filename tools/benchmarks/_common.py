"""Shared helpers for benchmark families: run metadata and result writing."""
import datetime
import json
import platform
import sys
from pathlib import Path

import torch

from agile_ir_plugin.profiling import device_name

OUT_DIR = Path(__file__).resolve().parents[2] / 'docs' / 'benchmarks'


def metadata(device='cpu'):
    return {
        'command': 'python tools/benchmark.py ' + ' '.join(sys.argv[1:]),
        'device': device_name(device),
        'torch': torch.__version__,
        'python': platform.python_version(),
        'date': datetime.date.today().isoformat(),
    }


def write_results(name, meta, rows, markdown, out_dir=OUT_DIR):
    """Write ``<name>.json`` (meta + rows) and ``<name>.md`` (a header naming command/device/date
    followed by ``markdown``) into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f'{name}.json'
    md_path = out_dir / f'{name}.md'
    json_path.write_text(json.dumps({'meta': meta, 'rows': rows}, indent=2) + '\n')
    header = (f"Command: `{meta['command']}`  \nDevice: {meta['device']}  \n"
              f"torch {meta['torch']}, Python {meta['python']}, date {meta['date']}\n\n")
    md_path.write_text(header + markdown.rstrip() + '\n')
    return json_path, md_path

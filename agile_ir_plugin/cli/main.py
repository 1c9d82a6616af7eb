"""``agile-ir``: the one command of the plugin (installed with the wheel, also ``python -m agile_ir_plugin.cli``).

    agile-ir train -opt options/train_esc_x4.yml          (BasicSR options)   | agile-ir train CONFIG.py  (MMagic)
    agile-ir test -opt options/test_esc_x4.yml                                | agile-ir test CONFIG.py CKPT
    agile-ir leaderboard --arch ESC --ckpt esc_x4.pth --scale 4 --datasets Set5 --root DIR
    agile-ir export --arch ESC --ckpt esc_x4.pth --out esc_x4.onnx
    agile-ir infer ...                      (see agile-ir infer --help)
    agile-ir convert SRC DST --to basicsr|mmagic [--param-key params_ema]
    agile-ir benchmark ...                  (needs a checkout: tools/benchmarks/)
    agile-ir template [NAME [DEST]]          list the shipped options / configs, or write one to DEST

Each subcommand takes the flags of its tool in a checkout (``tools/<name>.py --help``).
"""
import argparse
import importlib
import shutil
import sys
from pathlib import Path

COMMANDS = {  # subcommand -> (module with main(argv), one-line help)
    'train': ('agile_ir_plugin.cli.train', 'train from BasicSR options (-opt X.yml) or an MMagic config (X.py)'),
    'test': ('agile_ir_plugin.cli.test', 'test from BasicSR options or an MMagic config and checkpoint'),
    'leaderboard': ('agile_ir_plugin.cli.leaderboard', 'PSNR/SSIM (and efficiency) tables from checkpoints'),
    'export': ('agile_ir_plugin.cli.export_onnx', 'export a model to ONNX (dynamic batch, height, width)'),
    'infer': ('agile_ir_plugin.cli.infer', 'restore / upscale images with a checkpoint'),
    'convert': (__name__, 'convert a checkpoint between BasicSR and MMagic layouts'),
    'benchmark': (__name__, 'speed / memory benchmarks (needs a checkout of the repository)'),
    'template': (__name__, 'list the shipped options and configs, or write one to a path'),
}


def data_root():
    """Where the shipped ``options/`` and ``configs/`` are: ``agile_ir_plugin/_data`` in a wheel, the
    repository root in a checkout (editable install)."""
    package = Path(__file__).resolve().parents[1]
    shipped = package / '_data'
    return shipped if (shipped / 'options').is_dir() else package.parent


def templates():
    root = data_root()
    found = []
    for folder, pattern in (('options', '*.yml'), ('configs', '*.py')):
        found += sorted(p.relative_to(root).as_posix() for p in (root / folder).rglob(pattern))
    return found


def _write_bases(config, dest_dir):
    """An MMagic config names its bases by relative path (``../_base_/x.py``, ``./other.py``): write them
    where those paths point from ``dest_dir`` (existing files are kept), recursively."""
    import re
    for rel in sorted(set(re.findall(r"['\"](\.{1,2}/[\w./]+\.py)['\"]", config.read_text()))):
        src, dst = (config.parent / rel).resolve(), dest_dir / rel
        if src.is_file() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            print(f'wrote {dst}')
            _write_bases(src, dst.parent)


def template_main(argv):
    p = argparse.ArgumentParser(prog='agile-ir template', description='List the shipped options and MMagic configs, '
                                'or write one (NAME as listed, e.g. options/train_esc_x4.yml) to DEST.')
    p.add_argument('name', nargs='?')
    p.add_argument('dest', nargs='?', help='file or folder (default: the current folder)')
    p.add_argument('--force', action='store_true', help='overwrite DEST')
    args = p.parse_args(argv)
    names = templates()
    if not args.name:
        print('\n'.join(names))
        return 0
    name = args.name if args.name in names else next((n for n in names if Path(n).name == args.name), None)
    if name is None:
        raise SystemExit(f'error: no shipped template {args.name!r}; `agile-ir template` lists them '
                         f'(e.g. options/train_esc_x4.yml, configs/esc/esc_x4c64b5_4xb16-500k_div2k.py).')
    dest = Path(args.dest or '.')
    if dest.is_dir():
        dest = dest / Path(name).name
    if dest.exists() and not args.force:
        raise SystemExit(f'error: {dest} exists; pass --force to overwrite it.')
    dest.parent.mkdir(parents=True, exist_ok=True)
    if name.startswith('configs/'):
        _write_bases(data_root() / name, dest.parent)
    shutil.copyfile(data_root() / name, dest)
    print(f'wrote {dest}')
    return 0


def convert_main(argv):
    from agile_ir_plugin.checkpoint import CheckpointError, convert_checkpoint
    p = argparse.ArgumentParser(prog='agile-ir convert', description='Convert a checkpoint (BasicSR params/params_ema, '
                                'official state_dict/module., MMagic generator./generator_ema., bare) to the BasicSR '
                                'or MMagic layout; every tensor is kept and the output is verified before it is named.')
    p.add_argument('src')
    p.add_argument('dst')
    p.add_argument('--to', choices=['basicsr', 'mmagic'], required=True)
    p.add_argument('--param-key', help='write only this weight set (params / params_ema); default: all of them')
    args = p.parse_args(argv)
    try:
        info = convert_checkpoint(args.src, args.dst, to=args.to, param_key=args.param_key)
    except CheckpointError as err:
        raise SystemExit(f'error: {err}') from None
    sets = ', '.join(f'{name} <- {src or "state dict"}' for name, src in info['sets'].items())
    print(f'wrote {args.dst} ({args.to} layout: {sets}; {info["tensors"]} tensors)')
    return 0


def benchmark_main(argv):
    checkout = Path(__file__).resolve().parents[2]
    script = checkout / 'tools' / 'benchmark.py'
    if not script.is_file():
        raise SystemExit('error: the benchmarks live in a checkout of the repository (tools/benchmarks/); '
                         'clone it and run `python tools/benchmark.py --help` there.')
    sys.path.insert(0, str(checkout))
    module = importlib.import_module('tools.benchmark') if (checkout / 'tools' / '__init__.py').is_file() else None
    if module is None:
        import runpy
        sys.argv = [str(script), *argv]
        runpy.run_path(str(script), run_name='__main__')
        return 0
    return module.main(argv)


LOCAL = {'template': template_main, 'convert': convert_main, 'benchmark': benchmark_main}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(__doc__.strip())
        print('\nsubcommands:\n' + '\n'.join(f'  {name:12s} {text}' for name, (_, text) in COMMANDS.items()))
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        raise SystemExit(f'error: unknown subcommand {command!r}; one of: {", ".join(COMMANDS)}')
    if command in LOCAL:
        return LOCAL[command](rest)
    try:
        module = importlib.import_module(COMMANDS[command][0])
    except ModuleNotFoundError as err:
        if err.name != COMMANDS[command][0]:
            raise
        raise SystemExit(f'error: `agile-ir {command}` is not available in this version of agile_ir_plugin.') from None
    sys.argv = [f'agile-ir {command}', *rest]  # argparse's prog in usage lines
    return module.main(rest)


if __name__ == '__main__':
    sys.exit(main())

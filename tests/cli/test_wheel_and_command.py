"""The wheel (built here, not installed) carries the library, options/ and configs/ as package data, the
license, the `agile-ir` console command and metadata matching the README; the command's subcommands."""
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

from conftest import REPO_ROOT

from agile_ir_plugin.cli import main as cli

SOURCES = ('agile_ir_plugin', 'options', 'configs', 'setup.cfg', 'setup.py', 'pyproject.toml', 'README.md', 'LICENSE',
           'MANIFEST.in', 'constraints.txt')


@pytest.mark.slow
def test_wheel_contents_entry_point_and_metadata(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    for name in SOURCES:  # a copy: the build writes build/ and *.egg-info next to the sources
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns('__pycache__', '*.pyc', '*.egg-info'))
        else:
            shutil.copy(path, src / name)
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w',
                        str(tmp_path / 'dist'), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next((tmp_path / 'dist').glob('agile_ir_plugin-*.whl'))
    names = zipfile.ZipFile(wheel).namelist()
    for option in (REPO_ROOT / 'options').glob('*.yml'):
        assert f'agile_ir_plugin/_data/options/{option.name}' in names
    for config in (REPO_ROOT / 'configs').rglob('*.py'):
        assert f'agile_ir_plugin/_data/{config.relative_to(REPO_ROOT).as_posix()}' in names
    for module in ('cli/main.py', 'cli/train.py', 'cli/export_onnx.py', 'checkpoint.py', 'spandrel_support.py',
                   'mmagic/model.py', 'archs/esc_arch.py'):
        assert f'agile_ir_plugin/{module}' in names
    dist_info = next(n.split('/')[0] for n in names if n.endswith('.dist-info/METADATA'))
    archive = zipfile.ZipFile(wheel)
    assert any(n.startswith(f'{dist_info}/') and n.endswith('LICENSE') for n in names)
    entry_points = archive.read(f'{dist_info}/entry_points.txt').decode()
    assert 'agile-ir = agile_ir_plugin.cli.main:main' in entry_points
    metadata = archive.read(f'{dist_info}/METADATA').decode()
    assert 'Requires-Dist: torch>=2.14' in metadata and 'License: Apache-2.0' in metadata
    assert 'Requires-Dist: spandrel; extra == "dev"' in metadata
    assert 'Requires-Dist: setuptools<81; extra == "mmagic"' in metadata
    assert 'Requires-Dist: onnxscript; extra == "export"' in metadata


def test_template_lists_and_writes_options_and_configs_with_their_bases(tmp_path, capsys):
    assert cli.main(['template']) == 0
    listed = capsys.readouterr().out.split()
    assert 'options/train_esc_x4.yml' in listed and 'configs/esc/esc_x4c64b5_4xb16-500k_div2k.py' in listed
    assert cli.main(['template', 'options/train_esc_x4.yml', str(tmp_path)]) == 0
    assert (tmp_path / 'train_esc_x4.yml').read_text() == (REPO_ROOT / 'options' / 'train_esc_x4.yml').read_text()
    dest = tmp_path / 'cfg' / 'esc' / 'esc.py'
    assert cli.main(['template', 'configs/esc/esc_x4c64b5_4xb16-500k_div2k.py', str(dest)]) == 0
    assert (tmp_path / 'cfg' / '_base_' / 'sr_div2k_x4.py').is_file()  # where ../_base_/ points from dest
    with pytest.raises(SystemExit, match='exists; pass --force'):
        cli.main(['template', 'options/train_esc_x4.yml', str(tmp_path)])
    with pytest.raises(SystemExit, match="error: no shipped template 'nope.yml'"):
        cli.main(['template', 'nope.yml'])


def test_convert_subcommand_basicsr_to_mmagic(tmp_path, capsys):
    sd = {'w': torch.ones(2), 'b': torch.zeros(1)}
    torch.save({'params': sd, 'params_ema': {k: v + 1 for k, v in sd.items()}}, tmp_path / 'a.pth')
    assert cli.main(['convert', str(tmp_path / 'a.pth'), str(tmp_path / 'b.pth'), '--to', 'mmagic']) == 0
    out = torch.load(tmp_path / 'b.pth', weights_only=True)['state_dict']
    assert torch.equal(out['generator.w'], sd['w']) and torch.equal(out['generator_ema.w'], sd['w'] + 1)
    assert 'mmagic layout' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='^error: '):
        cli.main(['convert', str(tmp_path / 'missing.pth'), str(tmp_path / 'c.pth'), '--to', 'basicsr'])


def test_every_subcommand_is_dispatched(capsys):
    assert cli.main(['--help']) == 0
    text = capsys.readouterr().out
    for name in ('train', 'test', 'leaderboard', 'export', 'infer', 'convert', 'benchmark', 'template'):
        assert f'  {name} ' in text
    with pytest.raises(SystemExit) as exc:
        cli.main(['export', '--help'])
    assert exc.value.code == 0 and 'agile-ir export' in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown subcommand 'nope'"):
        cli.main(['nope'])

"""tools/train.py / tools/test.py (and `agile-ir train|test`) choose the framework from the config's extension
wherever it stands in argv (was: only argv[0]; `torch.distributed.launch` passes --local-rank=N first ->
`the following arguments are required: -opt`), and say which mode they chose."""
import pytest

from agile_ir_plugin.cli import _framework, test as cli_test, train as cli_train


@pytest.mark.parametrize('argv', [
    ['--local-rank=1', 'configs/esc/esc_x4c64b5_4xb16-500k_div2k.py', '--launcher', 'pytorch'],
    ['--local_rank', '0', 'cfg.py'],
    ['--launcher', 'pytorch', 'cfg.py', '--work-dir', 'w'],
    ['cfg.py'],
])
def test_mmagic_config_anywhere(argv, capsys):
    framework, out = _framework.choose_framework(argv, 'train')
    assert framework == 'mmagic' and out == argv
    assert capsys.readouterr().err.count('INFO agile-ir train: MMagic mode') == 1


def test_basicsr_options_with_local_rank_first(capsys):
    framework, out = _framework.choose_framework(['--local-rank=2', '-opt', 'opt_x.py.yml', '--launcher', 'pytorch'],
                                                 'test')
    assert framework == 'basicsr'
    assert out == ['--local_rank=2', '-opt', 'opt_x.py.yml', '--launcher', 'pytorch']
    assert 'INFO agile-ir test: BasicSR mode (opt_x.py.yml' in capsys.readouterr().err


@pytest.mark.parametrize('module, kind', [(cli_train, 'train'), (cli_test, 'test')])
def test_launcher_argv_reaches_the_mmagic_runner(module, kind, monkeypatch):
    import agile_ir_plugin.mmagic_entry as entry
    calls = []
    monkeypatch.setattr(entry, 'run', lambda k, argv: calls.append((k, argv)) or 0)
    argv = ['--local-rank=0', 'cfg.py', '--launcher', 'pytorch']
    assert module.main(argv) == 0
    assert calls == [(kind, argv)]

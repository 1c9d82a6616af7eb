"""The preflight's declared option keys against the code that reads them: every key declared for
BasicSR is read somewhere in BasicSR's source, every key the plugin declares is read in the plugin,
so the schema (which turns near-miss keys into errors) cannot drift into accepting dead keys."""
import re
from pathlib import Path

from agile_ir_plugin.basicsr.option_schema import LEGACY, PLUGIN, SCHEMA

PKG = Path(__file__).resolve().parents[2] / 'agile_ir_plugin'


def _sources(root, skip=()):
    return '\n'.join(p.read_text(encoding='utf-8', errors='replace') for p in Path(root).rglob('*.py')
                     if p.name not in skip)


def _read_in(text, key):
    return re.search(r"""['"]%s['"]""" % re.escape(key), text) is not None


def test_every_basicsr_key_is_read_by_basicsr():
    import basicsr
    text = _sources(Path(basicsr.__file__).parent)
    for section, keys in SCHEMA.items():
        for key in keys:
            if section.endswith(('prefixes', 'suffixes')):
                assert re.search(re.escape(key), text), (section, key)
            else:
                assert _read_in(text, key), f'{section}.{key} is declared but BasicSR never reads it'


def test_every_plugin_key_is_read_by_the_plugin():
    text = _sources(PKG, skip=('option_schema.py',))
    for section, keys in PLUGIN.items():
        for key in keys:
            pattern = key if section.endswith('prefixes') else None
            found = re.search(re.escape(pattern), text) if pattern else _read_in(text, key)
            assert found, f'{section}.{key} is declared but nothing in agile_ir_plugin reads it'


def test_legacy_keys_are_really_not_read():
    """A legacy key that BasicSR reads again belongs in SCHEMA."""
    import basicsr
    text = _sources(Path(basicsr.__file__).parent)
    assert not [k for keys in LEGACY.values() for k in keys if _read_in(text, k)]

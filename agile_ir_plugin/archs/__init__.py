"""Pure-torch architectures (no BasicSR / MMagic imports).

Every ``*_arch.py`` module in this folder is imported here, and each class named in its
``__all__`` is exported, so ``from agile_ir_plugin.archs import ESC`` works and the framework
adapters can register exactly the public archs (``ARCHS``) without a hand-kept list.
"""
import importlib
from pathlib import Path

ARCHS = {}  # registry name -> class, filled from each *_arch.py module's __all__

for _path in sorted(Path(__file__).parent.glob('*_arch.py')):
    _module = importlib.import_module(f'{__name__}.{_path.stem}')
    for _name in getattr(_module, '__all__', ()):
        ARCHS[_name] = getattr(_module, _name)
        globals()[_name] = ARCHS[_name]

__all__ = ['ARCHS', *ARCHS]

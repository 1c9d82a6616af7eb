"""Build step: ship the repository's options/ and configs/ inside the wheel as agile_ir_plugin/_data/.

In a checkout they stay at the top level (the commands of the README use them there; an editable
install finds them there too, see agile_ir_plugin.cli.main.data_root).  Everything else is in setup.cfg."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA = ('options', 'configs')


class build_py_with_data(build_py):
    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return  # an editable install reads the checkout's folders
        for name in DATA:
            src, dst = ROOT / name, Path(self.build_lib) / 'agile_ir_plugin' / '_data' / name
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))


setup(cmdclass={'build_py': build_py_with_data})

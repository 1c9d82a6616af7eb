"""BasicSR's own ``test_pipeline``, run after the plugin's compat fixes and registration (so it
works on CPU and loads our archs), with the options' ``dist_params`` honoured under torchrun."""
import sys

from .. import compat
from .options import _peek_yaml


def test_pipeline(root_path):
    from basicsr.test import test_pipeline as basicsr_test_pipeline
    compat.DIST_PARAMS.clear()
    compat.DIST_PARAMS.update(_peek_yaml(sys.argv[1:]).get('dist_params') or {})
    return basicsr_test_pipeline(root_path)

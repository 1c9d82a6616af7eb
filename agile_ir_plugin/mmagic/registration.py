"""Registration of the plugin's archs (and spectral components) into MMagic's registries (see the
package docstring)."""
from mmagic.registry import DATASETS as MMAGIC_DATASETS
from mmagic.registry import METRICS as MMAGIC_METRICS
from mmagic.registry import MODELS as MMAGIC_MODELS
from mmengine.registry import Registry

from .. import archs

SCOPE = 'agile_ir'  # the alias scheme of the BasicSR registries too: type='agile_ir.ESC'

# A child of MMagic's MODELS: `type='agile_ir.X'` finds it from any mmagic-scoped build
# (BaseEditModel builds its generator with mmagic.registry.MODELS), and a plain `type='X'` looked
# up here falls back to MMagic's own models.  Created once per interpreter (module import cache).
MODELS = Registry('model', parent=MMAGIC_MODELS, scope=SCOPE)
DATASETS = Registry('dataset', parent=MMAGIC_DATASETS, scope=SCOPE)  # likewise for the spectral components
METRICS = Registry('metric', parent=MMAGIC_METRICS, scope=SCOPE)


def registered_names():
    """{arch name: the type string that builds it from an MMagic config}."""
    return {name: (name if MMAGIC_MODELS._module_dict.get(name) is cls else f'{SCOPE}.{name}')
            for name, cls in archs.ARCHS.items()}


def register_all():
    """Register every arch of ``agile_ir_plugin.archs.ARCHS`` and ``agile_ir.BaseEditModel``; idempotent."""
    # MMagic registers its models when `mmagic.models` is first imported (the registry's
    # `locations`): import them now, so a name taken by MMagic is known before we register ours.
    MMAGIC_MODELS.import_from_location()
    for name, cls in archs.ARCHS.items():
        if name not in MODELS._module_dict:
            MODELS.register_module(name=name, module=cls)
        # never shadow one of MMagic's own models (MMagic 1.2.0 ships a `Restormer`)
        if name not in MMAGIC_MODELS._module_dict:
            MMAGIC_MODELS.register_module(name=name, module=cls)
    if 'BaseEditModel' not in MODELS._module_dict:  # only under the scope: MMagic's own keeps its name
        from .model import AgileEditModel
        MODELS.register_module(name='BaseEditModel', module=AgileEditModel)
    _register_spectral()
    return registered_names()


def _register_spectral():
    """agile_ir_plugin.mmagic.spectral's dataset, loss, preprocessor and metric: always under the scope
    (`type='agile_ir.SpectralMetrics'`), under the plain name too where MMagic has none of that name."""
    from .spectral import COMPONENTS
    ours = {'dataset': (DATASETS, MMAGIC_DATASETS), 'model': (MODELS, MMAGIC_MODELS),
            'metric': (METRICS, MMAGIC_METRICS)}
    for kind, name, cls in COMPONENTS:
        scoped, mmagic = ours[kind]
        mmagic.import_from_location()
        if name not in scoped._module_dict:
            scoped.register_module(name=name, module=cls)
        if name not in mmagic._module_dict:
            mmagic.register_module(name=name, module=cls)

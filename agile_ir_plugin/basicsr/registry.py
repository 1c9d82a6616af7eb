"""Registering into BasicSR's registries so that the plugin and a BasicSR fork live in one process.

Names.  Everything the plugin registers (archs, models, losses, datasets, metrics) is always
available under the namespaced alias ``agile_ir.<Name>`` (``type: agile_ir.ESC``,
``model_type: agile_ir.ImageRestorationModel``): options that name the alias always get ours.
The plain name (``ESC``) is ours too, unless someone else owns it:

* a fork registered it first (e.g. the official ESC repository's ``ESC`` / ``ESCFP``): theirs is
  kept, ours is registered under the alias only, and one warning names both;
* a fork registers it after us: its registration succeeds and replaces our plain entry (ours stays
  under the alias), with the same one warning.  BasicSR's ``Registry._do_register`` asserts that a
  name is new (``AssertionError: An object named 'ESCFP' was already registered in 'arch'
  registry!``) and has no hook for this, so the plain names we hold are kept in
  :class:`YieldingNames`, a ``dict`` that reports a name held by us as free to a newcomer.  It
  replaces a registry's ``_obj_map`` once, keeping every entry and its order.

Re-importing a module of the plugin (a reload, a second import path) registers nothing twice.
"""
import warnings

ALIAS_PREFIX = 'agile_ir.'


def alias(name):
    """``'ESC'`` -> ``'agile_ir.ESC'``."""
    return name if name.startswith(ALIAS_PREFIX) else ALIAS_PREFIX + name


class NameTakenWarning(UserWarning):
    """A plain name we would register belongs to another package; ours is under its alias."""


def _warn_taken(registry_name, name, theirs, ours):
    def where(obj):
        return f'{getattr(obj, "__module__", "?")}.{getattr(obj, "__qualname__", obj)}'
    warnings.warn(f"BasicSR's {registry_name} registry: {name!r} is {where(theirs)}; agile_ir_plugin's "
                  f"{where(ours)} is registered as {alias(name)!r} only (use that name to pick ours).",
                  NameTakenWarning, stacklevel=3)


class YieldingNames(dict):
    """A registry's name map in which the plain names held by the plugin give way to a newcomer."""

    def __init__(self, registry_name, entries=()):
        super().__init__(entries)
        self.registry_name = registry_name
        self.yielding = set()  # plain names held by the plugin that another package may take

    def __contains__(self, name):
        return super().__contains__(name) and name not in self.yielding

    def __setitem__(self, name, obj):
        if name in self.yielding:
            self.yielding.discard(name)
            ours = dict.get(self, name)
            if obj is not ours:
                _warn_taken(self.registry_name, name, obj, ours)
        super().__setitem__(name, obj)

    def hold(self, name, obj):
        """Register ``obj`` under the plain ``name`` as one that yields to a later registration."""
        super().__setitem__(name, obj)
        self.yielding.add(name)


def _names(registry):
    names = registry._obj_map
    if not isinstance(names, YieldingNames):
        names = YieldingNames(registry._name, registry._obj_map)
        registry._obj_map = names
    return names


def _same(a, b):
    """The same component, also across a re-import of its module (a new class object)."""
    return a is b or (getattr(a, '__module__', None) == getattr(b, '__module__', 0)
                      and getattr(a, '__qualname__', None) == getattr(b, '__qualname__', 0))


def register_name(registry, name, obj):
    """Register ``obj`` as ``agile_ir.<name>`` and, unless another package owns it, as ``name``."""
    names = _names(registry)
    key = alias(name)
    if key in names:
        return  # registered already (a re-import of the module)
    dict.__setitem__(names, key, obj)
    plain = name
    if dict.__contains__(names, plain):
        if plain in names.yielding or _same(dict.get(names, plain), obj):
            return
        _warn_taken(registry._name, plain, dict.get(names, plain), obj)
        return
    names.hold(plain, obj)


def register(registry, name=None):
    """Decorator form of :func:`register_name` (name: the object's ``__name__``)."""
    def deco(obj):
        register_name(registry, name or obj.__name__, obj)
        return obj
    return deco


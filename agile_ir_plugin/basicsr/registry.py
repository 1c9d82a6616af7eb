"""Registering into BasicSR's registries exactly once.

BasicSR's ``Registry.register`` asserts a name is new, so re-importing a module (a reload, a
second import path) would raise "An object named ... was already registered".  Components use
``register(REGISTRY)`` instead: the first registration wins and re-imports are no-ops."""


def register(registry, name=None):
    def deco(obj):
        key = name or obj.__name__
        if key not in registry:
            registry._do_register(key, obj)
        return obj
    return deco

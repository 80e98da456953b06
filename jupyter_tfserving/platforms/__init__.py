"""Platforms: turn a :class:`~jupyter_tfserving.core.servable.LoadSpec` into a
:class:`~jupyter_tfserving.core.servable.Loader` (after TF Serving's ``platform_config_map``).

The manager calls :func:`make_loader` once per aspired version, on whatever thread handles the
source's update; the returned loader's ``load()`` is called later, on a worker thread. Making a
loader must be cheap and must not import TensorFlow: this module and every platform module import
their heavy dependencies inside ``load()`` only, so ``import jupyter_tfserving.platforms`` stays
light.

New platforms (``"python"`` for cloudpickled callables, say) register a factory with
:func:`register_platform`, or are added to ``_REGISTRY`` below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..core.servable import Loader, LoadSpec, Servable
from ..core.status import Code, ServingError

__all__ = [
    "LoaderFactory",
    "UnsupportedPlatformLoader",
    "make_loader",
    "register_platform",
    "supported_platforms",
]


class _ServableIdLike(Protocol):
    """What :func:`make_loader` needs of a servable id (``core.state.ServableId`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...


# (servable_id, spec) -> Loader. Must be cheap and must not import TensorFlow.
LoaderFactory = Callable[[Any, LoadSpec], Loader]


def _tensorflow_factory(servable_id: Any, spec: LoadSpec) -> Loader:
    from .tensorflow import SavedModelLoader

    return SavedModelLoader(spec.path, bool(spec.extra.get("prefer_tflite_model", False)),
                            warmup=bool(spec.extra.get("model_warmup", True)),
                            warmup_iterations=int(spec.extra.get("warmup_iterations", 1)))


def _python_factory(servable_id: Any, spec: LoadSpec) -> Loader:
    from .python import PythonLoader

    return PythonLoader(spec.path, spec.extra.get("signing_key"))


_REGISTRY: dict[str, LoaderFactory] = {
    "tensorflow": _tensorflow_factory,
    "python": _python_factory,
}


def register_platform(name: str, factory: LoaderFactory) -> None:
    """Make ``factory`` the loader factory for ``LoadSpec.platform == name``.

    Called at import/start-up time (before the manager makes loaders); replaces any factory
    already registered under ``name``.
    """
    _REGISTRY[name] = factory


def supported_platforms() -> list[str]:
    """The platform names :func:`make_loader` accepts, sorted."""
    return sorted(_REGISTRY)


class UnsupportedPlatformLoader:
    """The loader for a platform nobody registered: its ``load()`` always fails UNIMPLEMENTED.

    Failing at load (not at :func:`make_loader`) lets the manager record the version as END with
    this error, as TF Serving does for a model whose platform it cannot serve.
    """

    def __init__(self, servable_id: Any, platform: str) -> None:
        self.servable_id = servable_id
        self.platform = platform

    def load(self) -> Servable:
        raise ServingError(
            Code.UNIMPLEMENTED,
            f"Platform '{self.platform}' is not supported "
            f"(supported platforms: {', '.join(supported_platforms())})",
        )


def make_loader(servable_id: _ServableIdLike | Any, spec: LoadSpec) -> Loader:
    """The loader for one version: dispatches on ``spec.platform``.

    Never raises for an unknown platform: it returns an :class:`UnsupportedPlatformLoader` whose
    ``load()`` raises ``ServingError(UNIMPLEMENTED, ...)``.
    """
    factory = _REGISTRY.get(spec.platform)
    if factory is None:
        return UnsupportedPlatformLoader(servable_id, spec.platform)
    return factory(servable_id, spec)

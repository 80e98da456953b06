"""TF Serving's protobuf messages and gRPC service classes, loaded without starting TensorFlow.

``tensorflow-serving-api``'s generated modules import TensorFlow's own ``*_pb2`` modules
(``tensorflow.core.framework.tensor_pb2`` ...), and importing any ``tensorflow.*`` module runs
``tensorflow/__init__.py``: seconds of CPU and hundreds of MiB in a Jupyter server that may never
load a model. :func:`load` instead executes the generated files it needs itself, resolving their
``tensorflow.*`` imports to private module objects that never enter ``sys.modules``, so nothing
another thread imports can ever see a half-made ``tensorflow`` package.

Why this is sound: a generated module only registers its file in protobuf's default descriptor
pool and builds the message classes from it, so the private copies never depend on another
thread's half-done import of the same files (TensorFlow may be loading a model meanwhile).
Registering an identical file again is a no-op and protobuf keeps one class per descriptor:
when TensorFlow is imported later (a model loads) and runs the same files,
``tensor_pb2.TensorProto`` there *is* the class used here (``CopyFrom`` between the two works,
``isinstance`` holds). The ``tensorflow_serving.*`` modules loaded here are put in
``sys.modules`` under their own names, so later imports of them get these. Once TensorFlow is
imported (or if it already was), plain imports are used.

Thread-safe; the first call costs ~0.1 s (call it off the event loop), later calls nothing.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# What the gRPC front end and the kernel's stub use, by attribute name.
_MODULES = {
    "predict_pb2": "tensorflow_serving.apis.predict_pb2",
    "classification_pb2": "tensorflow_serving.apis.classification_pb2",
    "regression_pb2": "tensorflow_serving.apis.regression_pb2",
    "inference_pb2": "tensorflow_serving.apis.inference_pb2",
    "input_pb2": "tensorflow_serving.apis.input_pb2",
    "model_pb2": "tensorflow_serving.apis.model_pb2",
    "get_model_metadata_pb2": "tensorflow_serving.apis.get_model_metadata_pb2",
    "get_model_status_pb2": "tensorflow_serving.apis.get_model_status_pb2",
    "model_management_pb2": "tensorflow_serving.apis.model_management_pb2",
    "prediction_service_pb2": "tensorflow_serving.apis.prediction_service_pb2",
    "model_service_pb2": "tensorflow_serving.apis.model_service_pb2",
    "prediction_service_pb2_grpc": "tensorflow_serving.apis.prediction_service_pb2_grpc",
    "model_service_pb2_grpc": "tensorflow_serving.apis.model_service_pb2_grpc",
    "tensor_pb2": "tensorflow.core.framework.tensor_pb2",
    "tensor_shape_pb2": "tensorflow.core.framework.tensor_shape_pb2",
    "types_pb2": "tensorflow.core.framework.types_pb2",
    "example_pb2": "tensorflow.core.example.example_pb2",
    "feature_pb2": "tensorflow.core.example.feature_pb2",
    "meta_graph_pb2": "tensorflow.core.protobuf.meta_graph_pb2",
}

# gRPC's full service names, as reflection and the health service list them.
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"


@dataclass(frozen=True)
class Protos:
    """The loaded modules (TF Serving's generated code ships no types: everything is Any)."""

    predict_pb2: Any
    classification_pb2: Any
    regression_pb2: Any
    inference_pb2: Any
    input_pb2: Any
    model_pb2: Any
    get_model_metadata_pb2: Any
    get_model_status_pb2: Any
    model_management_pb2: Any
    prediction_service_pb2: Any  # the service descriptors (reflection describes them)
    model_service_pb2: Any
    prediction_service_pb2_grpc: Any
    model_service_pb2_grpc: Any
    tensor_pb2: Any
    tensor_shape_pb2: Any
    types_pb2: Any
    example_pb2: Any
    feature_pb2: Any
    meta_graph_pb2: Any


_lock = threading.Lock()
_protos: Protos | None = None


def load() -> Protos:
    """The modules, loaded once per process (see the module docstring)."""
    global _protos
    if _protos is None:
        with _lock:
            if _protos is None:
                if _imported("tensorflow"):
                    modules = {k: importlib.import_module(v) for k, v in _MODULES.items()}
                else:
                    loader = _PrivateLoader()
                    modules = {k: loader.load(v) for k, v in _MODULES.items()}
                    loader.publish_serving_modules()
                _protos = Protos(**modules)
    return _protos


def _imported(name: str) -> bool:
    """Whether module ``name`` is imported and done initialising (another thread may be
    in the middle of importing it: TensorFlow takes seconds)."""
    module = sys.modules.get(name)
    return module is not None and not getattr(getattr(module, "__spec__", None),
                                              "_initializing", False)


def _package_roots(top: str) -> list[str]:
    """The directories of top-level package ``top`` (a namespace package, or one whose
    ``__path__`` spans several, has more than one), found without importing it."""
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{top} is not installed")
    return list(spec.submodule_search_locations)


_PRIVATE_TOPS = ("tensorflow", "tensorflow_serving")


class _PrivateLoader:
    """Executes generated ``*_pb2`` / ``*_pb2_grpc`` files of ``tensorflow`` and
    ``tensorflow_serving`` as private modules, their ``from X import Y`` statements resolved
    by :meth:`_import` to other private modules."""

    def __init__(self) -> None:
        self.roots = {top: _package_roots(top) for top in _PRIVATE_TOPS}
        self.modules: dict[str, types.ModuleType] = {}
        self.packages: dict[str, types.ModuleType] = {}
        self.builtins = {**vars(builtins), "__import__": self._import}

    @staticmethod
    def _is_private(name: str) -> bool:
        return name.split(".", 1)[0] in _PRIVATE_TOPS

    def load(self, name: str) -> Any:
        module = self.modules.get(name)
        if module is not None:
            return module
        if name.startswith("tensorflow_serving.") and _imported(name):
            return sys.modules[name]
        top, *rest = name.split(".")
        candidates = [os.path.join(root, *rest) + ".py" for root in self.roots[top]]
        path = next((p for p in candidates if os.path.isfile(p)), candidates[0])
        with open(path, encoding="utf-8") as f:
            code = compile(f.read(), path, "exec")
        module = types.ModuleType(name)
        module.__file__ = path
        module.__dict__["__builtins__"] = self.builtins
        self.modules[name] = module
        try:
            exec(code, module.__dict__)
        except BaseException:
            del self.modules[name]
            raise
        return module

    def _package(self, name: str) -> types.ModuleType:
        package = self.packages.get(name)
        if package is None:
            package = self.packages[name] = types.ModuleType(name)
        return package

    def _import(self, name: str, globals: Mapping[str, Any] | None = None,
                locals: Mapping[str, Any] | None = None, fromlist: Sequence[str] | None = (),
                level: int = 0) -> Any:
        if level != 0 or not self._is_private(name):
            return builtins.__import__(name, globals, locals, fromlist or (), level)
        if not fromlist:
            raise ImportError(f"unexpected 'import {name}' in a generated protobuf module")
        if tuple(fromlist) == ("*",):
            return self.load(name)
        package = self._package(name)
        for item in fromlist:
            setattr(package, item, self.load(f"{name}.{item}"))
        return package

    def publish_serving_modules(self) -> None:
        """Put the ``tensorflow_serving.*`` modules in ``sys.modules`` (their packages have
        empty ``__init__`` files and import normally); ``tensorflow.*`` ones stay private."""
        for name, module in self.modules.items():
            if not name.startswith("tensorflow_serving."):
                continue
            parent, _, leaf = name.rpartition(".")
            package = importlib.import_module(parent)
            module.__dict__["__builtins__"] = builtins
            published = sys.modules.setdefault(name, module)
            if not hasattr(package, leaf):
                setattr(package, leaf, published)

"""The ``tensorflow`` platform: SavedModels loaded the way TensorFlow Serving loads them.

With ``prefer_tflite_model`` (TF Serving's flag), a version directory holding a ``model.tflite``
is served from it instead (:mod:`.tflite`).

Every SavedModel -- TF1 graphs with reference variables, TF2 exports from ``tf.saved_model.save``
and Keras 3 ``model.export`` alike -- is imported into its own ``tf.Graph`` and run in a TF1-style
``tf.compat.v1.Session`` (TF Serving's ``LoadSavedModel`` + ``Session::Run``). One code path covers
all of them: ``tf.saved_model.load`` cannot load the TF1 reference-variable models
(saved_model_half_plus_three, saved_model_counter), while a session runs the TF2 exports'
``StatefulPartitionedCall`` signatures and their ``__saved_model_init_op`` just as well.

TensorFlow is imported only inside functions that are called once a model is loaded, so importing
this module is cheap. Every ``tf.errors.OpError`` leaves this module as a
:class:`~jupyter_tfserving.core.status.ServingError` with the same canonical code.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.servable import (
    Example,
    ExampleBatch,
    SignatureInfo,
    TensorInfo,
)
from ..core.status import Code, ServingError, SignatureNotFound
from .warmup import WarmupReport, run_warmup

if TYPE_CHECKING:  # pragma: no cover
    from .tflite import TfLiteServable

__all__ = ["SavedModelLoader", "SavedModelServable", "configure_tensorflow"]

SERVE_TAG = "serve"
# TF2 exports carry their initializer as a pseudo-signature; it is listed in metadata (TF Serving
# does) but is not a signature clients can run.
INIT_OP_SIGNATURE_KEY = "__saved_model_init_op"

_configure_lock = threading.Lock()
_configured = False


def configure_tensorflow() -> None:
    """Set memory growth on every visible GPU, once per process, before the first model loads.

    Called by :meth:`SavedModelLoader.load` (any thread; idempotent). Memory growth keeps the
    server process from grabbing all GPU memory, so kernels on the same GPU keep working
    (DESIGN §5). If TensorFlow already initialised its GPUs (someone used TF first), the setting
    can no longer change and that is tolerated. Nothing else is set globally.
    """
    global _configured
    with _configure_lock:
        if _configured:
            return
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            # "Physical devices cannot be modified after being initialized".
            with contextlib.suppress(RuntimeError, ValueError):
                tf.config.experimental.set_memory_growth(gpu, True)
        _configured = True


def _op_error(e: Any, prefix: str = "") -> ServingError:
    """``tf.errors.OpError`` -> ServingError with the same canonical code."""
    return ServingError(Code(e.error_code), f"{prefix}{e.message}")


def _dtype_name(dtype_enum: int) -> str:
    from tensorflow.core.framework import types_pb2

    try:
        return types_pb2.DataType.Name(dtype_enum)
    except ValueError:
        return "DT_INVALID"


def _tensor_info(info: Any) -> TensorInfo:
    """A ``tensorflow.TensorInfo`` proto -> core TensorInfo.

    Reference dtypes (``DT_FLOAT_REF`` in TF1 graphs that fetch a variable directly) are reported
    as their value dtype: what ``run`` returns is a plain value, and REST codecs need not know
    about refs. ``metadata()`` keeps the proto's own dtype, as TF Serving does.
    """
    dtype = _dtype_name(info.dtype)
    if dtype.endswith("_REF"):
        dtype = dtype[: -len("_REF")]
    if info.tensor_shape.unknown_rank:
        shape: tuple[int, ...] | None = None
    else:
        shape = tuple(int(d.size) for d in info.tensor_shape.dim)
    encoding = info.WhichOneof("encoding")
    if encoding == "name":
        name = info.name
    elif encoding == "coo_sparse":
        name = info.coo_sparse.values_tensor_name
    else:
        name = ""
    return TensorInfo(dtype=dtype, shape=shape, name=name)


@dataclass(frozen=True)
class _RunnableSignature:
    """What ``run`` needs of one signature, resolved once at load."""

    feeds: Mapping[str, str]  # input alias -> tensor name
    fetches: Mapping[str, str]  # output alias -> tensor name
    defaults: Mapping[str, np.ndarray]  # input alias -> default value (TF2 signature defaults)
    unsupported: str | None  # why ``run`` refuses this signature, or None


def _runnable(name: str, sig: Any) -> _RunnableSignature:
    import tensorflow as tf

    unsupported = None
    for kind, infos in (("input", sig.inputs), ("output", sig.outputs)):
        for alias, info in infos.items():
            encoding = info.WhichOneof("encoding")
            if encoding != "name":
                unsupported = (
                    f"Signature '{name}' has a {encoding or 'unnamed'} {kind} '{alias}'; "
                    "only dense tensors are supported"
                )
    defaults = {alias: tf.make_ndarray(t) for alias, t in sig.defaults.items()}
    return _RunnableSignature(
        feeds={a: i.name for a, i in sig.inputs.items()},
        fetches={a: i.name for a, i in sig.outputs.items()},
        defaults=defaults,
        unsupported=unsupported,
    )


def signature_info(sig: Any) -> SignatureInfo:
    """A ``tensorflow.SignatureDef`` proto -> core SignatureInfo (also for TF Lite's)."""
    return SignatureInfo(
        inputs={a: _tensor_info(i) for a, i in sig.inputs.items()},
        outputs={a: _tensor_info(i) for a, i in sig.outputs.items()},
        method_name=sig.method_name,
        defaults=frozenset(sig.defaults),
    )


def signature_metadata(signature_defs: Mapping[str, Any]) -> dict[str, Any]:
    """TF Serving's GetModelMetadata ``metadata`` member for these SignatureDefs, as parsed
    JSON.

    TF Serving packs the signature map into a ``SignatureDefMap`` inside an ``Any`` keyed
    ``signature_def`` and prints it with field names preserved and default-valued fields
    included; hence the doubled ``signature_def`` key.
    """
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2

    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for key, sig in signature_defs.items():
        sig_map.signature_def[key].CopyFrom(sig)
    try:
        as_dict = json_format.MessageToDict(
            sig_map, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    except TypeError:  # protobuf < 5.26 spells the option differently
        as_dict = json_format.MessageToDict(  # type: ignore[call-arg]  # old name, not in stubs
            sig_map, preserving_proto_field_name=True, including_default_value_fields=True
        )
    return {"signature_def": as_dict}


def _feature_proto(feature: Any) -> Any:
    """A core ``Feature`` -> ``tf.train.Feature`` (INVALID_ARGUMENT for an unknown kind)."""
    import tensorflow as tf

    values = list(feature.values)
    if feature.kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    if feature.kind == "int64":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    if feature.kind == "bytes":
        encoded = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values]
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=encoded))
    raise ServingError(
        Code.INVALID_ARGUMENT, f"Unsupported tf.Example feature kind: {feature.kind!r}"
    )


def _serialize_examples(batch: ExampleBatch) -> np.ndarray:
    """Serialized ``tf.train.Example``s as a DT_STRING vector (object array of bytes).

    Context features are copied into every example first, so an example's own feature of the same
    name wins (TF Serving's ExampleListWithContext semantics).
    """
    import tensorflow as tf

    context: Mapping[str, Any] = batch.context or {}
    context_protos = {name: _feature_proto(f) for name, f in context.items()}
    serialized: list[bytes] = []
    example: Example
    for example in batch.examples:
        proto = tf.train.Example()
        features = proto.features.feature
        for name, fp in context_protos.items():
            features[name].CopyFrom(fp)
        for name, f in example.items():
            features[name].CopyFrom(_feature_proto(f))
        serialized.append(proto.SerializeToString())
    out = np.empty(len(serialized), dtype=object)
    out[:] = serialized
    return out


class SavedModelServable:
    """One loaded SavedModel version: a graph, the session that owns it, its signatures.

    Made only by :meth:`SavedModelLoader.load`. ``run`` and ``run_examples`` may be called from
    many threads at once (``Session.run`` is thread-safe; nothing here mutates after load).
    ``close`` is called once, after the last handle is released.
    """

    def __init__(self, path: str, session: Any, meta_graph: Any) -> None:
        self.path = path
        self._session = session
        self._closed = False
        self._metadata = signature_metadata(meta_graph.signature_def)
        self._signatures: dict[str, SignatureInfo] = {}
        self._runnable: dict[str, _RunnableSignature] = {}
        self._callables: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._callables_lock = threading.Lock()
        for name, sig in meta_graph.signature_def.items():
            if name == INIT_OP_SIGNATURE_KEY:
                continue
            self._signatures[name] = signature_info(sig)
            self._runnable[name] = _runnable(name, sig)

    def signatures(self) -> Mapping[str, SignatureInfo]:
        """Every runnable-looking signature by name (``__saved_model_init_op`` left out;
        sparse/composite ones included, though ``run`` refuses them)."""
        return self._signatures

    def _lookup(self, signature_name: str) -> _RunnableSignature:
        if self._closed:
            raise ServingError(Code.FAILED_PRECONDITION, f"SavedModel at {self.path} was unloaded")
        runnable = self._runnable.get(signature_name)
        if runnable is None:
            raise SignatureNotFound(signature_name)
        if runnable.unsupported is not None:
            raise ServingError(Code.UNIMPLEMENTED, runnable.unsupported)
        return runnable

    def _callable(self, runnable: _RunnableSignature, feed_names: tuple[str, ...]) -> Any:
        """A session callable for (signature, fed tensors), made once and cached.

        Callables run like TF Serving's C++ ``Session::Run``: the feed replaces the placeholder
        without the Python client's static shape check, so a [-1, 1] input accepts a [3] batch
        exactly as TF Serving does; they also skip ``Session.run``'s per-call graph lookups.
        """
        key = (id(runnable), feed_names)
        fn = self._callables.get(key)
        if fn is None:
            with self._callables_lock:
                fn = self._callables.get(key)
                if fn is None:
                    from tensorflow.core.protobuf import config_pb2

                    options = config_pb2.CallableOptions(
                        feed=list(feed_names), fetch=list(runnable.fetches.values())
                    )
                    # The public make_callable re-adds the Python client's shape check; this is
                    # the path it wraps (TF_SessionMakeCallable), also used by Keras' backend.
                    fn = self._session._make_callable_from_options(options)
                    self._callables[key] = fn
        return fn

    def _session_run(
        self, runnable: _RunnableSignature, feed: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        import tensorflow as tf

        names = tuple(feed)
        try:
            values = self._callable(runnable, names)(*(feed[n] for n in names))
        except tf.errors.OpError as e:
            raise _op_error(e) from None
        except (ValueError, TypeError) as e:
            # Feeds that cannot become tensors of the fed dtype.
            raise ServingError(Code.INVALID_ARGUMENT, str(e)) from None
        except RuntimeError as e:  # closed session, a graph that cannot run
            raise ServingError(Code.FAILED_PRECONDITION, str(e)) from None
        return {alias: np.asarray(v) for alias, v in zip(runnable.fetches, values, strict=True)}

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Feed ``inputs`` by tensor name and fetch every output of the signature.

        Inputs missing from the request take the signature's default (TF2 signature defaults)
        if it has one; unknown or still-missing inputs are INVALID_ARGUMENT.
        """
        runnable = self._lookup(signature_name)
        extra = sorted(set(inputs) - set(runnable.feeds))
        if extra:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"input tensor alias not found in signature: {extra[0]}. Inputs expected to be "
                f"in the set {{{','.join(sorted(runnable.feeds))}}}.",
            )
        feed: dict[str, Any] = {}
        missing = []
        for alias, tensor_name in runnable.feeds.items():
            if alias in inputs:
                feed[tensor_name] = inputs[alias]
            elif alias in runnable.defaults:
                feed[tensor_name] = runnable.defaults[alias]
            else:
                missing.append(alias)
        if missing:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Missing input(s) for signature '{signature_name}': {', '.join(sorted(missing))}. "
                f"Inputs expected to be in the set {{{','.join(sorted(runnable.feeds))}}}.",
            )
        return self._session_run(runnable, feed)

    def run_examples(self, signature_name: str, batch: ExampleBatch) -> dict[str, np.ndarray]:
        """Serialize ``batch`` as ``tf.train.Example``s and feed them to the signature's single
        input tensor by name; returns every output. As TF Serving, the graph decides, not the
        dtype the signature declares (old TF1 exports declare DT_FLOAT for the string
        ``tf_example:0`` placeholder); a tensor that cannot take strings is INVALID_ARGUMENT."""
        runnable = self._lookup(signature_name)
        info = self._signatures[signature_name]
        if len(info.inputs) != 1:
            raise ServingError(Code.INVALID_ARGUMENT, "Expected one input Tensor.")
        (alias, _), = info.inputs.items()
        serialized = _serialize_examples(batch)
        return self._session_run(runnable, {runnable.feeds[alias]: serialized})

    def metadata(self) -> dict[str, Any]:
        """``{"signature_def": {"signature_def": {...}}}`` exactly as TF Serving's JSON has it
        (every signature, ``__saved_model_init_op`` included). A fresh copy per call."""
        return copy.deepcopy(self._metadata)

    def close(self) -> None:
        """Close the session, freeing the graph's variables and device memory. Idempotent."""
        if not self._closed:
            self._closed = True
            self._session.close()


class SavedModelLoader:
    """Loads the SavedModel in directory ``path`` (one version directory) with the ``serve`` tag.

    Made by ``platforms.make_loader``; ``load()`` is called by the manager on a worker thread and
    either returns a ready :class:`SavedModelServable` or raises ServingError: NOT_FOUND for a
    directory with no ``saved_model.pb``/``.pbtxt`` or no ``serve`` meta graph, DATA_LOSS for an
    unreadable one, the OpError's own code for a graph that fails to import or restore. Messages
    name the path.
    """

    def __init__(self, path: str, prefer_tflite_model: bool = False, *,
                 warmup: bool = True, warmup_iterations: int = 1) -> None:
        self.path = str(path)
        self.prefer_tflite_model = prefer_tflite_model
        self.warmup = warmup
        self.warmup_iterations = warmup_iterations
        self.warmup_report: WarmupReport | None = None

    def load(self) -> SavedModelServable | TfLiteServable:
        """The loaded version, warmed up with its ``assets.extra/tf_serving_warmup_requests``
        when ``warmup`` (:mod:`.warmup`; a failing record fails the load)."""
        servable = self._load()
        if self.warmup:
            try:
                self.warmup_report = run_warmup(self.path, servable, self.warmup_iterations)
            except BaseException:
                servable.close()
                raise
        return servable

    def _session_config(self) -> Any:
        import tensorflow as tf

        config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
        config.gpu_options.allow_growth = True
        return config

    def _load(self) -> SavedModelServable | TfLiteServable:
        from .tflite import TfLiteLoader, has_tflite_model

        if self.prefer_tflite_model and has_tflite_model(self.path):
            return TfLiteLoader(self.path).load()
        configure_tensorflow()
        import tensorflow as tf

        path = self.path
        if not os.path.isdir(path) or not tf.saved_model.contains_saved_model(path):
            # bad_half_plus_two is a legacy SessionBundle export (export.meta): not a SavedModel.
            hint = (" (it has a model.tflite: serve it with prefer_tflite_model)"
                    if has_tflite_model(path) else "")
            raise ServingError(
                Code.NOT_FOUND,
                "Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
                f"{path}{hint}",
            )
        session = tf.compat.v1.Session(graph=tf.Graph(), config=self._session_config())
        try:
            meta_graph = tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], path)
            return SavedModelServable(path, session, meta_graph)
        except ServingError:
            session.close()
            raise
        except tf.errors.OpError as e:
            session.close()
            raise _op_error(e, f"Failed to load SavedModel at {path}: ") from None
        except OSError as e:
            session.close()
            raise ServingError(
                Code.DATA_LOSS, f"Could not read SavedModel at {path}: {e}"
            ) from None
        except RuntimeError as e:
            session.close()
            if "MetaGraphDef associated with tags" in str(e):
                raise ServingError(
                    Code.NOT_FOUND,
                    f"Could not find meta graph def matching supplied tags: {{ {SERVE_TAG} }} "
                    f"in SavedModel at {path}",
                ) from None
            raise ServingError(Code.UNKNOWN, f"Failed to load SavedModel at {path}: {e}") from None
        except Exception as e:
            session.close()
            raise ServingError(
                Code.UNKNOWN, f"Failed to load SavedModel at {path}: {type(e).__name__}: {e}"
            ) from None

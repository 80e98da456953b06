"""The ``python`` platform: a cloudpickled callable (a function, an sklearn estimator, any object
with ``predict``) served behind one ``serving_default`` predict signature (DESIGN §2).

A version directory holds ``servable.json`` and the pickle it names::

    {"platform": "python", "format": 1, "pickle": "servable.pkl", "sha256": "<hex>",
     "signature": {"inputs": {"x": {"dtype": "DT_FLOAT", "shape": null}},
                   "outputs": {"output_0": {"dtype": "DT_FLOAT", "shape": null}}},
     "hmac": "<hex>"}

Unpickling runs arbitrary code, so only versions published through this extension are ever
unpickled. The kernel writes a version with :func:`write_python_version` (no key); the server's
authenticated upload path checks it and adds ``hmac`` with :func:`sign_python_version` before
renaming it into the repository; :class:`PythonLoader` refuses, without unpickling, anything whose
HMAC-SHA256 (over the canonical JSON of every other field, the pickle's sha256 included) does not
verify under the server's key, or whose pickle does not match that sha256.

Importing this module imports neither TensorFlow nor cloudpickle.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import stat
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..core.dtypes import JSON_DTYPES
from ..core.servable import (
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    ExampleBatch,
    SignatureInfo,
    TensorInfo,
)
from ..core.status import Code, ServingError, SignatureNotFound

__all__ = [
    "PICKLE_FILE",
    "SERVABLE_JSON",
    "PythonLoader",
    "PythonServable",
    "read_platform",
    "sign_python_version",
    "write_python_version",
]

SERVABLE_JSON = "servable.json"
PICKLE_FILE = "servable.pkl"
PLATFORM = "python"
FORMAT = 1
_HMAC_FIELD = "hmac"
# servable.json is a few hundred bytes; anything much larger is not ours.
_MAX_JSON_BYTES = 1 << 20
# The dtypes the REST codecs can turn JSON into.
_DTYPES = JSON_DTYPES
DEFAULT_OUTPUT = "output_0"
_DEFAULT_SIGNATURE_JSON: dict[str, Any] = {
    "inputs": {"x": {"dtype": "DT_FLOAT", "shape": None}},
    "outputs": {DEFAULT_OUTPUT: {"dtype": "DT_FLOAT", "shape": None}},
}


def _invalid(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


# --- servable.json -------------------------------------------------------------------------------


def _tensor_spec(where: str, spec: Any) -> dict[str, Any]:
    if not isinstance(spec, Mapping) or set(spec) != {"dtype", "shape"}:
        raise _invalid(f"{where} must be an object with exactly 'dtype' and 'shape'")
    dtype = spec["dtype"]
    if dtype not in _DTYPES:
        raise _invalid(f"{where} has dtype {dtype!r}; supported: {', '.join(sorted(_DTYPES))}")
    shape = spec["shape"]
    if shape is not None:
        if not isinstance(shape, (list, tuple)) or not all(
            type(d) is int and d >= -1 for d in shape
        ):
            raise _invalid(
                f"{where} has shape {shape!r}; it must be null (unknown rank) or a list of "
                "integers, -1 for an unknown dimension"
            )
        shape = list(shape)
    return {"dtype": dtype, "shape": shape}


def _validate_signature(signature: Any) -> dict[str, Any]:
    """A signature as given by the user or read from servable.json -> its JSON form (shapes as
    lists), or INVALID_ARGUMENT saying what is wrong."""
    if not isinstance(signature, Mapping) or set(signature) != {"inputs", "outputs"}:
        raise _invalid("The signature must be an object with exactly 'inputs' and 'outputs'")
    out: dict[str, Any] = {}
    for kind in ("inputs", "outputs"):
        tensors = signature[kind]
        if not isinstance(tensors, Mapping) or not tensors:
            raise _invalid(f"The signature's {kind} must be a non-empty object")
        out[kind] = {}
        for name, spec in tensors.items():
            if not isinstance(name, str) or not name:
                raise _invalid(f"The signature's {kind} have a name that is not a non-empty string")
            out[kind][name] = _tensor_spec(f"Signature {kind[:-1]} {name!r}", spec)
    return out


def _signature_info(signature: Mapping[str, Any]) -> SignatureInfo:
    def tensors(kind: str) -> dict[str, TensorInfo]:
        return {
            name: TensorInfo(
                dtype=spec["dtype"],
                shape=None if spec["shape"] is None else tuple(spec["shape"]),
                name=name,
            )
            for name, spec in signature[kind].items()
        }

    return SignatureInfo(
        inputs=tensors("inputs"), outputs=tensors("outputs"), method_name=PREDICT_METHOD
    )


def _tensor_metadata(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """One TensorInfo as TF Serving's metadata JSON writes it (int64 sizes as strings)."""
    if spec["shape"] is None:
        shape: dict[str, Any] = {"dim": [], "unknown_rank": True}
    else:
        dims = [{"size": str(d), "name": ""} for d in spec["shape"]]
        shape = {"dim": dims, "unknown_rank": False}
    return {"dtype": spec["dtype"], "tensor_shape": shape, "name": name}


def _metadata(signature: Mapping[str, Any]) -> dict[str, Any]:
    """GetModelMetadata's ``metadata`` member, shaped exactly like the tensorflow platform's
    (``json_format`` of a ``SignatureDefMap``, default-valued fields included)."""
    sig_def = {
        "inputs": {n: _tensor_metadata(n, s) for n, s in signature["inputs"].items()},
        "outputs": {n: _tensor_metadata(n, s) for n, s in signature["outputs"].items()},
        "method_name": PREDICT_METHOD,
        "defaults": {},
    }
    return {"signature_def": {"signature_def": {DEFAULT_SIGNATURE: sig_def}}}


def _canonical(doc: Mapping[str, Any]) -> bytes:
    """What the HMAC covers: every field but ``hmac``, as sorted, compact, ASCII JSON."""
    unsigned = {k: v for k, v in doc.items() if k != _HMAC_FIELD}
    return json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _mac(key: bytes, doc: Mapping[str, Any]) -> str:
    return hmac.new(key, _canonical(doc), hashlib.sha256).hexdigest()


def _read_json(version_dir: str) -> Any:
    """servable.json parsed; OSError or ValueError if it is missing, not a regular file, too
    large or not JSON."""
    path = os.path.join(version_dir, SERVABLE_JSON)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block the open
    with os.fdopen(os.open(path, flags), "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"{SERVABLE_JSON} is not a regular file")
        raw = f.read(_MAX_JSON_BYTES + 1)
    if len(raw) > _MAX_JSON_BYTES:
        raise ValueError(f"{SERVABLE_JSON} is larger than {_MAX_JSON_BYTES} bytes")
    return json.loads(raw.decode("utf-8"))


def _pickle_path(version_dir: str, name: Any) -> str | None:
    """``version_dir/name`` if ``name`` is a plain file name, else None."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or name == SERVABLE_JSON
    ):
        return None
    return os.path.join(version_dir, name)


def _read_regular_file(path: str) -> bytes:
    """The bytes of a regular file, never through a symlink (OSError otherwise)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block the open
    with os.fdopen(os.open(path, flags), "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        return f.read()


def _write_file(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename), mode 0o644; an existing
    ``path`` (even a symlink) is replaced, never written through."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _predict_fn(obj: Any) -> Callable[..., Any] | None:
    """What ``run`` calls: ``obj.predict`` if callable, else ``obj`` if callable, else None."""
    predict = getattr(obj, "predict", None)
    if callable(predict):
        return predict
    if callable(obj):
        return obj
    return None


# --- kernel side: writing a version ---------------------------------------------------------------


def write_python_version(
    dest: str, obj: Any, *, signature: Mapping[str, Any] | None = None
) -> None:
    """Write ``obj`` as an (unsigned) python-platform version into directory ``dest``.

    Called in the kernel, before the directory is packed and uploaded; needs no key. Creates
    ``dest`` if missing and writes ``servable.pkl`` (``cloudpickle.dumps(obj)``) and
    ``servable.json``. ``signature`` is ``{"inputs": {name: {"dtype": "DT_...", "shape": None |
    [ints]}}, "outputs": {...}}`` (-1 for an unknown dimension); by default one DT_FLOAT input
    ``x`` and one DT_FLOAT output ``output_0``, both of unknown shape. Raises
    ``ServingError(INVALID_ARGUMENT)`` for a bad signature, an object that is neither callable nor
    has a callable ``predict``, or one cloudpickle cannot pickle.
    """
    import cloudpickle

    sig = _validate_signature(_DEFAULT_SIGNATURE_JSON if signature is None else signature)
    if _predict_fn(obj) is None:
        raise _invalid(
            f"A {type(obj).__name__} cannot be served: it is not callable and has no callable "
            "'predict'"
        )
    try:
        payload = cloudpickle.dumps(obj)
    except Exception as e:
        raise _invalid(f"Cannot pickle {type(obj).__name__}: {type(e).__name__}: {e}") from e
    doc = {
        "platform": PLATFORM,
        "format": FORMAT,
        "pickle": PICKLE_FILE,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "signature": sig,
    }
    os.makedirs(dest, exist_ok=True)
    _write_file(os.path.join(dest, PICKLE_FILE), payload)
    _write_file(os.path.join(dest, SERVABLE_JSON), (json.dumps(doc, indent=2) + "\n").encode())


# --- server side: signing an uploaded version, reading the platform -----------------------------


def sign_python_version(version_dir: str, key: bytes) -> None:
    """Check an uploaded python-platform version and add its ``hmac`` to servable.json.

    Called by the server's upload path after an authenticated upload has been unpacked into a
    staging directory and before that directory is renamed into the repository. Requires:
    servable.json a JSON object with exactly platform "python", format 1, a ``pickle`` that is a
    plain file name of a regular file in ``version_dir``, that file's ``sha256``, a valid
    ``signature`` (and optionally a stale ``hmac``, replaced). Raises
    ``ServingError(INVALID_ARGUMENT)`` saying what is wrong; FAILED_PRECONDITION for an empty key.
    """
    if not key:
        raise ServingError(Code.FAILED_PRECONDITION, "No key to sign python servables with")
    try:
        doc = _read_json(version_dir)
    except FileNotFoundError:
        raise _invalid(f"A python servable needs a {SERVABLE_JSON}; none in the upload") from None
    except (OSError, ValueError) as e:
        raise _invalid(f"Cannot read {SERVABLE_JSON}: {e}") from None
    if not isinstance(doc, dict):
        raise _invalid(f"{SERVABLE_JSON} must be a JSON object")
    expected = {"platform", "format", "pickle", "sha256", "signature"}
    unexpected = set(doc) - expected - {_HMAC_FIELD}
    if unexpected or not expected <= set(doc):
        raise _invalid(
            f"{SERVABLE_JSON} must have exactly the fields {', '.join(sorted(expected))} "
            f"(got {', '.join(sorted(doc))})"
        )
    if doc["platform"] != PLATFORM:
        raise _invalid(f"{SERVABLE_JSON} has platform {doc['platform']!r}, not {PLATFORM!r}")
    if type(doc["format"]) is not int or doc["format"] != FORMAT:
        raise _invalid(f"{SERVABLE_JSON} has format {doc['format']!r}; supported: {FORMAT}")
    pickle_path = _pickle_path(version_dir, doc["pickle"])
    if pickle_path is None:
        raise _invalid(f"{SERVABLE_JSON} names pickle {doc['pickle']!r}, not a plain file name")
    try:
        payload = _read_regular_file(pickle_path)
    except OSError:
        raise _invalid(
            f"The pickle {doc['pickle']!r} named in {SERVABLE_JSON} is not a file in the upload"
        ) from None
    if not isinstance(doc["sha256"], str) or not hmac.compare_digest(
        doc["sha256"].encode("utf-8"), hashlib.sha256(payload).hexdigest().encode("ascii")
    ):
        raise _invalid(f"The sha256 in {SERVABLE_JSON} does not match {doc['pickle']!r}")
    doc["signature"] = _validate_signature(doc["signature"])
    doc.pop(_HMAC_FIELD, None)
    doc[_HMAC_FIELD] = _mac(key, doc)
    _write_file(
        os.path.join(version_dir, SERVABLE_JSON), (json.dumps(doc, indent=2) + "\n").encode()
    )


def read_platform(version_dir: str) -> str | None:
    """The ``platform`` named by ``version_dir``'s servable.json; None if there is none, it does
    not parse, or it names no platform. Cheap; verifies nothing. Called by the repository source
    to pick the platform of a version directory."""
    try:
        doc = _read_json(version_dir)
    except (OSError, ValueError):
        return None
    platform = doc.get("platform") if isinstance(doc, dict) else None
    return platform if isinstance(platform, str) and platform else None


# --- loading -------------------------------------------------------------------------------------


class PythonServable:
    """One loaded python-platform version: the unpickled object and its one signature.

    Made only by :meth:`PythonLoader.load`. ``run`` is called from many worker threads at once
    and calls the user's object concurrently without a lock: the object must tolerate that (pure
    functions and fitted sklearn estimators do). ``close`` drops the object.
    """

    def __init__(
        self, path: str, obj: Any, fn: Callable[..., Any], signature: Mapping[str, Any]
    ) -> None:
        self.path = path
        self._obj: Any = obj
        self._fn: Callable[..., Any] | None = fn
        self._signature = _signature_info(signature)
        self._signatures: dict[str, SignatureInfo] = {DEFAULT_SIGNATURE: self._signature}
        self._metadata = _metadata(signature)

    def signatures(self) -> Mapping[str, SignatureInfo]:
        """``{"serving_default": ...}`` as servable.json declares it."""
        return self._signatures

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the object: ``predict(x)`` / ``obj(x)`` for one input, keyword arguments by
        input name for several. A dict result maps output names to values, anything else is the
        one declared output. Exceptions from the object are INVALID_ARGUMENT
        ``"<Type>: <message>"``; a result that does not match the declared outputs is INTERNAL.
        """
        fn = self._fn
        if fn is None:
            raise ServingError(
                Code.FAILED_PRECONDITION, f"Python servable at {self.path} was unloaded"
            )
        if signature_name != DEFAULT_SIGNATURE:
            raise SignatureNotFound(signature_name)
        expected = self._signature.inputs
        extra = sorted(set(inputs) - set(expected))
        missing = sorted(set(expected) - set(inputs))
        if extra or missing:
            if extra:
                what = f"input tensor alias not found in signature: {extra[0]}"
            else:
                what = f"Missing input(s) for signature '{signature_name}': {', '.join(missing)}"
            raise _invalid(
                f"{what}. Inputs expected to be in the set {{{','.join(sorted(expected))}}}."
            )
        try:
            result = fn(next(iter(inputs.values()))) if len(expected) == 1 else fn(**inputs)
            return self._outputs(result)
        except ServingError:
            raise
        except Exception as e:
            raise _invalid(f"{type(e).__name__}: {e}") from None

    def _outputs(self, result: Any) -> dict[str, np.ndarray]:
        declared = list(self._signature.outputs)
        if isinstance(result, Mapping):
            absent = [name for name in declared if name not in result]
            if absent:
                raise ServingError(
                    Code.INTERNAL,
                    f"The python servable at {self.path} returned no output "
                    f"{', '.join(repr(n) for n in absent)} (it returned "
                    f"{', '.join(repr(str(k)) for k in result) or 'an empty dict'})",
                )
            return {name: np.asarray(result[name]) for name in declared}
        if len(declared) != 1:
            raise ServingError(
                Code.INTERNAL,
                f"The python servable at {self.path} returned a {type(result).__name__}; its "
                f"signature declares outputs {', '.join(declared)}, so it must return a dict",
            )
        return {declared[0]: np.asarray(result)}

    def run_examples(self, signature_name: str, batch: ExampleBatch) -> dict[str, np.ndarray]:
        """Python servables have no classify/regress signatures: always UNIMPLEMENTED."""
        raise ServingError(
            Code.UNIMPLEMENTED,
            f"Python servable at {self.path} does not take tf.Examples (classify/regress); "
            "use predict",
        )

    def metadata(self) -> dict[str, Any]:
        """``{"signature_def": {"signature_def": {"serving_default": ...}}}`` as the tensorflow
        platform writes it. A fresh copy per call."""
        return copy.deepcopy(self._metadata)

    def close(self) -> None:
        """Drop the object (and whatever it holds). Idempotent."""
        self._fn = None
        self._obj = None


class PythonLoader:
    """Loads the python-platform version in directory ``path``, verifying it with ``key``.

    Made by ``platforms.make_loader`` with the server's signing key (``LoadSpec.extra
    ["signing_key"]``); ``load()`` is called by the manager on a worker thread. Nothing is
    unpickled unless servable.json's ``hmac`` verifies under ``key`` and the pickle's sha256
    matches; otherwise FAILED_PRECONDITION "Refusing to unpickle ...". NOT_FOUND when there is no
    servable.json; FAILED_PRECONDITION or UNKNOWN when the pickle cannot be loaded (a module the
    server's environment lacks, say) or yields nothing servable.
    """

    def __init__(self, path: str, key: bytes | None) -> None:
        self.path = str(path)
        self._key = key

    def _refusal(self) -> ServingError:
        return ServingError(
            Code.FAILED_PRECONDITION,
            f"Refusing to unpickle {self.path}: it was not published through jupyter_tfserving "
            "(signature missing or invalid)",
        )

    def _verified_payload(self) -> tuple[dict[str, Any], bytes]:
        """servable.json and the pickle's bytes, once both are proven ours; raises otherwise."""
        try:
            doc = _read_json(self.path)
        except FileNotFoundError:
            raise ServingError(
                Code.NOT_FOUND, f"Could not find {SERVABLE_JSON} in python servable at {self.path}"
            ) from None
        except (OSError, ValueError):
            raise self._refusal() from None
        if not self._key or not isinstance(doc, dict):
            raise self._refusal()
        claimed = doc.get(_HMAC_FIELD)
        try:
            expected = _mac(self._key, doc)
        except ValueError:  # NaN or the like: never written by sign_python_version
            raise self._refusal() from None
        if not isinstance(claimed, str) or not hmac.compare_digest(
            claimed.encode("utf-8"), expected.encode("ascii")
        ):
            raise self._refusal()
        pickle_path = _pickle_path(self.path, doc.get("pickle"))
        if pickle_path is None or not isinstance(doc.get("sha256"), str):
            raise self._refusal()
        try:
            # Hashed and unpickled from the same bytes: nothing can swap the file in between.
            payload = _read_regular_file(pickle_path)
        except OSError:
            raise self._refusal() from None
        actual = hashlib.sha256(payload).hexdigest()
        if not hmac.compare_digest(doc["sha256"].encode("utf-8"), actual.encode("ascii")):
            raise self._refusal()
        return doc, payload

    def load(self) -> PythonServable:
        doc, payload = self._verified_payload()
        try:
            signature = _validate_signature(doc.get("signature"))
        except ServingError as e:
            raise ServingError(
                Code.FAILED_PRECONDITION,
                f"Bad signature in python servable at {self.path}: {e.message}",
            ) from None
        import cloudpickle

        try:
            obj = cloudpickle.loads(payload)
        except ModuleNotFoundError as e:
            raise ServingError(
                Code.FAILED_PRECONDITION,
                f"Failed to unpickle {self.path}: {type(e).__name__}: {e} (the server's Python "
                "environment needs the packages the object uses)",
            ) from None
        except Exception as e:
            raise ServingError(
                Code.UNKNOWN, f"Failed to unpickle {self.path}: {type(e).__name__}: {e}"
            ) from None
        fn = _predict_fn(obj)
        if fn is None:
            raise ServingError(
                Code.FAILED_PRECONDITION,
                f"Python servable at {self.path} holds a {type(obj).__name__}, which is not "
                "callable and has no callable 'predict'",
            )
        return PythonServable(self.path, obj, fn, signature)

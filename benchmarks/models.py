"""The benchmark's models, exported with TensorFlow (run in a child process by ``run.py``)::

    python -m benchmarks.models half_plus_two DIR   # y = 0.5 x + 2, x float [-1, 1]
    python -m benchmarks.models mlp DIR              # 4096 -> 4096 -> 4096 -> 10, float32

``mlp`` is memory-bound at batch 1: ~33.6 M float32 weights (~134 MB) are streamed from memory
for every call, whatever the batch size, so a batch of B rows costs little more than one row
until the matmuls become compute-bound. Its signature ``serving_default`` takes ``x`` float
[-1, 4096] (a batch dimension, so the server batches it) and answers ``y`` float [-1, 10].
Each export writes ``DIR/1`` atomically and is skipped when ``DIR/1`` exists.
"""

from __future__ import annotations

import os
import sys
import tempfile

MLP_WIDTH = 4096
MLP_OUT = 10


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    return tf


def export_mlp(base_path: str, version: int = 1, width: int = MLP_WIDTH) -> str:
    target = os.path.join(base_path, str(version))
    if os.path.isdir(target):
        return target
    tf = _tf()
    tf.random.set_seed(7)

    def dense(n_in: int, n_out: int) -> tuple:
        scale = (2.0 / n_in) ** 0.5
        return (tf.Variable(tf.random.normal([n_in, n_out], stddev=scale)),
                tf.Variable(tf.zeros([n_out])))

    class MLP(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w1, self.b1 = dense(width, width)
            self.w2, self.b2 = dense(width, width)
            self.w3, self.b3 = dense(width, MLP_OUT)

        @tf.function(input_signature=[tf.TensorSpec([None, width], tf.float32, name="x")])
        def serve(self, x):
            h = tf.nn.relu(tf.matmul(x, self.w1) + self.b1)
            h = tf.nn.relu(tf.matmul(h, self.w2) + self.b2)
            return {"y": tf.matmul(h, self.w3) + self.b3}

    os.makedirs(base_path, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=base_path)
    module = MLP()
    tf.saved_model.save(module, staging, signatures={"serving_default": module.serve})
    os.replace(staging, target)
    return target


def export_half_plus_two(base_path: str, version: int = 1) -> str:
    target = os.path.join(base_path, str(version))
    if os.path.isdir(target):
        return target
    _tf()
    from jupyter_tfserving.demo import export_half_plus_two as export

    return export(base_path, version)


def main(argv: list[str]) -> int:
    what, base_path = argv
    export = {"mlp": export_mlp, "half_plus_two": export_half_plus_two}[what]
    print(export(base_path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The benchmark's models, exported with TensorFlow (run in a child process by ``run.py``)::

    python -m benchmarks.models half_plus_two DIR   # y = 0.5 x + 2, x float [-1, 1]
    python -m benchmarks.models mlp DIR              # 4096 -> 4096 -> 4096 -> 10, float32
    python -m benchmarks.models mlp_in256 DIR        # 256 -> 4096 -> 4096 -> 4096 -> 10
    python -m benchmarks.models mlp784 DIR           # 784 -> 4096 -> 4096 -> 10

``mlp`` is memory-bound at batch 1: ~33.6 M float32 weights (~134 MB) are streamed from memory
for every call, whatever the batch size, so a batch of B rows costs little more than one row
until the matmuls become compute-bound. Its signature ``serving_default`` takes ``x`` float
[-1, 4096] (a batch dimension, so the server batches it) and answers ``y`` float [-1, 10].
``mlp_in256`` streams as many weights (~33.6 M, ~134 MB: three 4096-wide layers) but takes 256
inputs per row, so a request body is ~2.3 KB instead of ~37 KB: on 2 cores, JSON parsing of
4096 floats per row, not the model, otherwise decides what the server can do.
``mlp784`` (784 -> 4096 -> 4096 -> 10: ~20.0 M float32 weights, ~80 MB) takes an MNIST-sized
row (~6.5 KB of JSON, small enough for the server to parse it on its IOLoop); the ``mlp784``
scenario compares the server's CPU per served row with this model's own.
Each export writes ``DIR/1`` atomically and is skipped when ``DIR/1`` exists.
"""

from __future__ import annotations

import os
import sys

MLP_WIDTH = 4096
MLP_OUT = 10
# model name -> (input width, hidden layers of MLP_WIDTH)
MLP_SHAPES = {"mlp": (MLP_WIDTH, 2), "mlp_in256": (256, 3), "mlp784": (784, 2)}


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    return tf


def export_mlp(base_path: str, version: int = 1, width: int = MLP_WIDTH, hidden: int = 2) -> str:
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
            sizes = [width] + [MLP_WIDTH] * hidden
            self.layers = [dense(a, b) for a, b in zip(sizes, sizes[1:], strict=False)]
            self.out = dense(MLP_WIDTH, MLP_OUT)

        @tf.function(input_signature=[tf.TensorSpec([None, width], tf.float32, name="x")])
        def serve(self, x):
            h = x
            for w, b in self.layers:
                h = tf.nn.relu(tf.matmul(h, w) + b)
            return {"y": tf.matmul(h, self.out[0]) + self.out[1]}

    from jupyter_tfserving.demo import save_version

    return save_version(MLP(), base_path, version)


def export_half_plus_two(base_path: str, version: int = 1) -> str:
    target = os.path.join(base_path, str(version))
    if os.path.isdir(target):
        return target
    _tf()
    from jupyter_tfserving.demo import export_half_plus_two as export

    return export(base_path, version)


def main(argv: list[str]) -> int:
    what, base_path = argv
    if what in MLP_SHAPES:
        width, hidden = MLP_SHAPES[what]
        print(export_mlp(base_path, width=width, hidden=hidden))
    else:
        print({"half_plus_two": export_half_plus_two}[what](base_path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

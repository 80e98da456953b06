"""Bulk jobs: a served version over a data set, results written shard by shard (DESIGN §9).

:mod:`.sources` lists and reads the data set, :mod:`.sinks` writes each shard's results and the
manifest a resumed job reads. Nothing here imports tornado, Jupyter or TensorFlow.
"""

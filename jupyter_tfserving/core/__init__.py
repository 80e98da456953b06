"""The model manager: servable ids and states, loaders, sources, version and transition policies,
handles and labels (DESIGN §3, after tensorflow_serving/core).

This package imports only the standard library and numpy: no tornado, no jupyter_server, no
TensorFlow. Platforms (``jupyter_tfserving.platforms``) plug in through ``core.servable.Loader``.
"""

"""TensorFlow Serving's REST surface (DESIGN §4): JSON codecs (row/columnar/b64/tf.Example),
error mapping and the tornado handlers.

``json_codec`` imports only the standard library, numpy and ``jupyter_tfserving.core``; the
handlers are the only modules here that import tornado / jupyter_server.
"""

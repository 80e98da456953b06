"""TF Serving's gRPC front end (DESIGN §4b), in the Jupyter server process.

- :mod:`.protos`: ``tensorflow-serving-api``'s messages and servicer classes, loaded without
  starting TensorFlow;
- :mod:`.codec`: TensorProto / tf.Example <-> numpy and the data plane's results -> responses;
- :mod:`.status`: canonical codes -> gRPC status, TF Serving's message limit;
- :mod:`.auth`: the Jupyter login and authorizer for call metadata;
- :mod:`.servicers`: PredictionService and ModelService on the data plane;
- :mod:`.server`: the ``grpc.aio`` server with health and reflection.

Nothing here is imported until ``TFServingApp`` starts gRPC (or a kernel makes a stub).
"""

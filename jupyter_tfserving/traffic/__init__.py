"""Traffic tools: request logging and shadow traffic, fed by the data plane's exchanges. No
tornado, Jupyter or TensorFlow at import."""

"""lrrt service side: the HTTP API, the CLI and the Python client. Never imports TensorFlow or Keras."""

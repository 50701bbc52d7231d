"""lrrt's HTTP side: the FastAPI app, the dashboard and the server commands. Imports `lrrt`, never
the worker, TensorFlow or Keras."""

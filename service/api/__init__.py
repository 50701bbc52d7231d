"""The v1 HTTP API: routers under `routes/`, shared dependencies in `deps`."""

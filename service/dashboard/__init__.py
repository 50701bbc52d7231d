"""The web dashboard: a single page served by the API process at `/`, with its assets under `/dashboard/`.

Plain modern JavaScript modules and one vendored chart library (uPlot, see `static/vendor/README.md`):
no build step and no CDN, because users run the service inside closed networks. The page talks to the
public `/v1` API only, with the same Bearer key a script would use. Never imports TensorFlow or Keras.

Wire it into the app with ``app.include_router(service.dashboard.router)``.
"""

from service.dashboard.routes import router

__all__ = ["router"]

from tests.engine.conftest import engine_root  # noqa: F401  (the engine tests' data root, for the zoo's sweeps)

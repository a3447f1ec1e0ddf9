"""The application as `patron serve` runs it in each worker: once started, what the process
built to start is frozen out of the garbage collector's full collections. The application
the tests build many times over in one process freezes nothing. (``database_url`` configures
the session's engine, which the lifespan then uses.)"""

from __future__ import annotations

import gc

from app.main import create_app, create_served_app


async def test_the_served_app_freezes_what_it_started_with(database_url: str) -> None:
    app = create_served_app()
    gc.unfreeze()
    try:
        async with app.router.lifespan_context(app):
            frozen = gc.get_freeze_count()
            # The routes' handlers and models are among what is frozen.
            assert gc.is_tracked(app) and app not in gc.get_objects(generation=2)
        assert frozen > 10_000
    finally:
        gc.unfreeze()


async def test_the_app_tests_build_freezes_nothing(database_url: str) -> None:
    app = create_app()
    gc.unfreeze()
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == 0

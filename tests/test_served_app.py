"""The application as `patron serve` runs it in each worker: once started, what the process
built to start is frozen out of the garbage collector's full collections, and the youngest
generation is collected less often. The application the tests build many times over in one
process changes neither. (``database_url`` configures the session's engine, which the
lifespan then uses.)"""

from __future__ import annotations

import gc

from app.main import YOUNG_GENERATION_THRESHOLD, create_app, create_served_app


async def test_the_served_app_tunes_the_garbage_collector(database_url: str) -> None:
    app = create_served_app()
    thresholds = gc.get_threshold()
    gc.unfreeze()
    try:
        async with app.router.lifespan_context(app):
            frozen = gc.get_freeze_count()
            # The app itself is among what is frozen.
            assert app not in gc.get_objects(generation=2)
            assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD
        assert frozen > 10_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def test_the_app_tests_build_leaves_the_collector_alone(database_url: str) -> None:
    app = create_app()
    thresholds = gc.get_threshold()
    gc.unfreeze()
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == thresholds

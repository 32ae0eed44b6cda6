"""What the comparison projectors (bench/naive_projector.py, bench/connector_projector.py) share:
a FastStream app that bootstraps the store and subscribes one handler to the topic."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from consumers.projector import no_decoding
from services.mongo.bootstrap import Services, bootstrap, migrate
from services.settings import get_settings

Handler = Callable[[Services, KafkaMessage], Awaitable[None]]


def peer_app(handle: Handler, **subscriber: Any) -> FastStream:
    """The app: ``handle(services, message)`` for each message (or batch, with ``batch=True``
    among ``subscriber``'s options), from the topic's first record, in the settings' group."""
    settings = get_settings()
    broker = KafkaBroker(settings.kafka_bootstrap_servers)
    app = FastStream(broker)
    running: dict[str, Services] = {}

    @app.on_startup
    async def start() -> None:
        await migrate(settings)  # as threadview-admin migrate does before a deploy
        running["services"] = await bootstrap(settings)

    async def project(message: KafkaMessage) -> None:
        await handle(running["services"], message)

    # applied as a call, not as a decorator: with ``subscriber``'s options as Any, mypy cannot
    # pick the decorator's overload, and an untyped decorator would make project untyped
    broker.subscriber(
        settings.topic,
        group_id=settings.consumer_group,
        auto_offset_reset="earliest",
        decoder=no_decoding,
        **subscriber,
    )(project)
    return app

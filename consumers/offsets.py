"""Where the projector stands, for the API's consistency waits (services.applied): the
projector group's committed offsets and the events topic's end offsets, read through one admin
client and one group-less consumer, opened on first use (the API starts and serves without
Kafka; only waits and response tokens need it) and again after a failure."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import OffsetOutOfRangeError

from consumers.replay import read_range
from consumers.topics import admin_client, committed_offsets, partitions_of, reader
from services.settings import Settings
from services.views import ViewError


class GroupOffsets:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._opening = asyncio.Lock()
        self._keys: AIOKafkaConsumer | None = None  # the watch's reader of the records' keys
        self._reading = asyncio.Lock()

    async def committed(self) -> dict[int, int]:
        admin = await self._admin_client()
        try:
            return await committed_offsets(self.settings, admin)
        except Exception:
            await self._drop_admin()
            raise

    async def ends(self) -> dict[int, int]:
        """The events topic's last stable offsets (what read-committed readers reach)."""
        async with self._opening:
            if self._consumer is None:
                consumer = reader(self.settings)
                await consumer.start()
                self._consumer = consumer
        try:
            topic = self.settings.topic
            try:
                partitions = await partitions_of(self._consumer, topic)
            except ViewError:  # no such topic (yet): every partition a token names is past it
                return {}
            found = await self._consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
            return {tp.partition: offset for tp, offset in found.items()}
        except Exception:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
            raise

    async def keys_between(
        self, start: Mapping[int, int], end: Mapping[int, int], limit: int
    ) -> list[str] | None:
        """The keys (thread ids) of the records from ``start`` up to ``end``, per partition;
        None when there are more than ``limit`` of them, or when some of them are gone (the log
        starts after ``start``: retention, or records deleted): the watch then resets. The
        reader never skips to another offset by itself (``auto_offset_reset="none"``): a
        default reader would jump to the end and the gone records would pass unseen. Its fetches
        wait at most 20 ms at the log's end (the default 500 ms held each read up)."""
        spans = {p: (start.get(p, 0), o) for p, o in end.items() if o > start.get(p, 0)}
        if sum(stop - begin for begin, stop in spans.values()) > limit:
            return None
        async with self._reading:
            if self._keys is None:
                consumer = reader(self.settings, auto_offset_reset="none", fetch_max_wait_ms=20)
                await consumer.start()
                self._keys = consumer
            keys: list[str] = []
            try:
                for partition, (begin, stop) in sorted(spans.items()):
                    tp = TopicPartition(self.settings.topic, partition)
                    async for records in read_range(self._keys, tp, begin, stop, limit):
                        keys += [r.key.decode("utf-8", "replace") for r in records if r.key]
            except OffsetOutOfRangeError:
                await self._drop_keys()  # its partition holds the error: a fresh reader next
                return None
            except Exception:
                await self._drop_keys()
                raise
            return keys

    async def _drop_keys(self) -> None:
        keys, self._keys = self._keys, None
        if keys is not None:
            await keys.stop()

    async def _admin_client(self) -> AIOKafkaAdminClient:
        async with self._opening:
            if self._admin is None:
                admin = admin_client(self.settings)
                await admin.start()
                self._admin = admin
            return self._admin

    async def _drop_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.close()

    async def close(self) -> None:
        await self._drop_admin()
        await self._drop_keys()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

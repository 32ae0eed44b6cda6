"""Configuration, from THREADVIEW_* environment variables (see the README's table)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THREADVIEW_", frozen=True)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "threads.events"
    topic_partitions: int = Field(6, ge=1)
    dlq_topic: str = "threads.events.dlq"
    consumer_group: str = "threadview-projector"
    instance_id: str | None = None
    batch_max_records: int = Field(500, ge=1)
    batch_timeout_ms: int = Field(200, ge=0)
    # how often Kafka clients refresh the topic's metadata: partitions added to the topic are
    # consumed from their first record within this (the client default is 5 minutes)
    kafka_metadata_max_age_ms: int = Field(30_000, ge=100)
    mongo_url: str = "mongodb://127.0.0.1:27017"
    mongo_database: str = "threadview"
    mongo_timeout_ms: int = Field(5000, ge=100)
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # serve this view (threadview-rebuild) instead of the live one, read only
    view: str | None = None
    # the projector's own HTTP port: /healthz, /readyz, /metrics
    projector_host: str = "127.0.0.1"
    projector_port: int = 8001
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    # how long the API trusts a key it has checked: a revocation applies within this
    key_cache_seconds: float = Field(10.0, ge=0)
    # /readyz: the store must answer a ping within this
    ready_timeout_ms: int = Field(2000, ge=100)
    # the projector refreshes its consumer-lag gauges this often
    lag_interval_seconds: float = Field(5.0, gt=0)
    # what a producer may send (README, "Bounds"): an event dated more than this after its
    # record's broker timestamp is dead-lettered (time_in_future) ...
    max_clock_skew_seconds: float = Field(300.0, ge=0)
    # ... and so is one dated before this floor (time_before_floor)
    event_time_floor: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    # a record whose value and headers together weigh more is dead-lettered (too_large)
    max_record_bytes: int = Field(256 * 1024, ge=1024)
    # a dead-letter copy weighs at most this (value truncated beyond it, with headers that say so)
    dlq_max_bytes: int = Field(512 * 1024, ge=16 * 1024, le=1_000_000)  # topic: 1 MiB
    # the projector's /readyz fails after this long with lag and no committed progress, or
    # with the store failing
    stall_seconds: float = Field(120.0, gt=0)


@lru_cache
def get_settings() -> Settings:
    return Settings()

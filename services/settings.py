"""Configuration, from THREADVIEW_* environment variables (see the table in docs/operations.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
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
    # how every Kafka client connects (README, "Kafka security"): SASL_* logs in with the
    # mechanism, user name and password; SSL and SASL_SSL encrypt, trusting kafka_ssl_cafile
    # (else the system's CAs), with a client certificate when kafka_ssl_certfile is set
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None  # PEM; may hold the key too
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True
    mongo_url: str = "mongodb://127.0.0.1:27017"
    mongo_database: str = "threadview"
    mongo_timeout_ms: int = Field(5000, ge=100)
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # overload (README, "Overload"): requests in flight per API process beyond which a request
    # is answered 503 at once, with Retry-After (seconds)
    api_max_in_flight: int = Field(8, ge=1)
    # of which asking for include_total (each a count of up to api_total_cap per walk)
    api_max_totals_in_flight: int = Field(2, ge=1)
    api_retry_after_seconds: int = Field(1, ge=0)
    # each API request's store time (every query it runs, server-side maxTimeMS too); beyond it 503
    api_query_timeout_ms: int = Field(2000, ge=10)
    # index walks (organizations x deleted x pinned) one list request may read; beyond it 400
    api_max_walks: int = Field(32, ge=4)  # one organization, all four walks, always fits
    # include_total counts at most this many threads; a total that reached it is a lower bound
    api_total_cap: int = Field(10_000, ge=1)
    # a longer request target (path and query) is 414; larger request headers, 431
    api_max_url_bytes: int = Field(8 * 1024, ge=256)
    api_max_header_bytes: int = Field(16 * 1024, ge=1024)
    # read-your-writes (docs/api.md, "Consistency tokens"): the longest a request may wait for a
    # Consistency-Token (Prefer: wait=N is capped to it), the requests that may wait at once
    # per process, and how often the shared watcher reads the projector's committed offsets
    api_max_wait_seconds: float = Field(5.0, ge=0, le=60)
    api_max_waiting: int = Field(256, ge=1)
    api_consistency_poll_ms: int = Field(20, ge=5)
    # the watch (GET /v1/threads/watch): watchers per process and per key, and the seconds
    # without an event after which a watcher is sent a bookmark
    api_max_watchers: int = Field(1000, ge=1)
    api_max_watchers_per_key: int = Field(16, ge=1)
    api_watch_bookmark_seconds: float = Field(15.0, gt=0)
    # serve this view (threadview-rebuild) instead of the live one, read only
    view: str | None = None
    # the projector's own HTTP port: /healthz, /readyz, /metrics
    projector_host: str = "127.0.0.1"
    projector_port: int = 8001
    # the API process's internal port (docs/operations.md, "Ports, probes and metrics"):
    # /metrics, /docs, /redoc, /openapi.json, /healthz, /readyz; the public port (api_port)
    # serves /v1/* and the probes only, and the docs too when api_public_docs is true
    api_ops_host: str = "127.0.0.1"
    api_ops_port: int = 8002
    api_public_docs: bool = False
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    # how long the API trusts a key it has checked: a revocation applies within this
    key_cache_seconds: float = Field(10.0, ge=0)
    # /readyz: the store must answer a ping within this
    ready_timeout_ms: int = Field(2000, ge=100)
    # the projector refreshes its consumer-lag gauges this often
    lag_interval_seconds: float = Field(5.0, gt=0)
    # what a producer may send (docs/projector.md, "Bounds"): an event dated more than this
    # after its record's broker timestamp is dead-lettered (time_in_future) ...
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

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        """Kafka settings that contradict each other, or name a file that is not there, are
        refused at start rather than found out as a refused connection."""
        protocol = self.kafka_security_protocol
        sasl = {
            "kafka_sasl_mechanism": self.kafka_sasl_mechanism,
            "kafka_sasl_username": self.kafka_sasl_username,
            "kafka_sasl_password": self.kafka_sasl_password,
        }
        if protocol.startswith("SASL_"):
            if missing := [f"THREADVIEW_{k.upper()}" for k, v in sasl.items() if not v]:
                raise ValueError(f"kafka_security_protocol {protocol} needs {', '.join(missing)}")
        elif given := [f"THREADVIEW_{k.upper()}" for k, v in sasl.items() if v is not None]:
            raise ValueError(
                f"{', '.join(given)} set with kafka_security_protocol {protocol}: "
                "SASL applies to SASL_PLAINTEXT or SASL_SSL only"
            )
        ssl = {
            "kafka_ssl_cafile": self.kafka_ssl_cafile,
            "kafka_ssl_certfile": self.kafka_ssl_certfile,
            "kafka_ssl_keyfile": self.kafka_ssl_keyfile,
        }
        if not protocol.endswith("SSL"):
            given = [f"THREADVIEW_{k.upper()}" for k, v in ssl.items() if v is not None]
            if self.kafka_ssl_key_password is not None:
                given.append("THREADVIEW_KAFKA_SSL_KEY_PASSWORD")
            if given:
                raise ValueError(
                    f"{', '.join(given)} set with kafka_security_protocol {protocol}: "
                    "TLS applies to SSL or SASL_SSL only"
                )
        for name, path in ssl.items():
            if path is not None and not path.is_file():
                raise ValueError(f"THREADVIEW_{name.upper()}: no such file: {path}")
        for name, value in (
            ("KEYFILE", self.kafka_ssl_keyfile),
            ("KEY_PASSWORD", self.kafka_ssl_key_password),
        ):
            if value is not None and self.kafka_ssl_certfile is None:
                raise ValueError(f"THREADVIEW_KAFKA_SSL_{name} needs THREADVIEW_KAFKA_SSL_CERTFILE")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()

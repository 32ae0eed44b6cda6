"""The THREADVIEW_KAFKA_* security settings: what is refused, and the client options built."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

from consumers.kafka_security import broker_security, client_options
from services.settings import Settings

# Any values: Settings validates them at run time (some tests give it what it must refuse)
SASL: dict[str, Any] = {
    "kafka_security_protocol": "SASL_PLAINTEXT",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "projector",
    "kafka_sasl_password": "s3cret",
}


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    settings = Settings()
    assert client_options(settings) == {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": "PLAINTEXT",
    }
    assert broker_security(settings) is None


@pytest.mark.parametrize(
    ("mechanism", "kind"),
    [("PLAIN", SASLPlaintext), ("SCRAM-SHA-256", SASLScram256), ("SCRAM-SHA-512", SASLScram512)],
)
def test_sasl_logs_in_with_the_mechanism(mechanism: str, kind: type[BaseSecurity]) -> None:
    settings = Settings(**{**SASL, "kafka_sasl_mechanism": mechanism})
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == mechanism
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "projector",
        "s3cret",
    )
    assert "ssl_context" not in options
    security = broker_security(settings)
    assert type(security) is kind and not security.use_ssl
    assert (security.username, security.password) == ("projector", "s3cret")  # type: ignore[attr-defined]


def test_the_password_is_never_shown() -> None:
    settings = Settings(**SASL, kafka_ssl_key_password=None)
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)


def test_sasl_ssl_encrypts_and_checks_the_host() -> None:
    settings = Settings(**{**SASL, "kafka_security_protocol": "SASL_SSL"})
    context = client_options(settings)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    security = broker_security(settings)
    assert security is not None and security.use_ssl and security.ssl_context is not None


def test_ssl_alone_and_without_the_host_check() -> None:
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_check_hostname=False)
    options = client_options(settings)
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    assert not options["ssl_context"].check_hostname
    security = broker_security(settings)
    assert type(security) is BaseSecurity and security.use_ssl


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs THREADVIEW_KAFKA_SASL_MECHANISM"),
        ({**SASL, "kafka_sasl_password": ""}, "needs THREADVIEW_KAFKA_SASL_PASSWORD"),
        ({**SASL, "kafka_sasl_username": None}, "needs THREADVIEW_KAFKA_SASL_USERNAME"),
        ({"kafka_sasl_username": "projector"}, "SASL applies to SASL_PLAINTEXT or SASL_SSL"),
        ({"kafka_sasl_mechanism": "SCRAM-SHA-256"}, "SASL applies to"),
        ({"kafka_security_protocol": "SCRAM"}, "kafka_security_protocol"),
        ({**SASL, "kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
        ({"kafka_ssl_cafile": "__FILE__"}, "TLS applies to SSL or SASL_SSL only"),
        ({**SASL, "kafka_ssl_key_password": "x"}, "TLS applies to"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/no/ca.pem"}, "no such file"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "__FILE__"},
            "THREADVIEW_KAFKA_SSL_KEYFILE needs THREADVIEW_KAFKA_SSL_CERTFILE",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_key_password": "x"},
            "KEY_PASSWORD needs THREADVIEW_KAFKA_SSL_CERTFILE",
        ),
    ],
)
def test_contradictions_are_refused_with_what_to_set(
    given: dict[str, Any], said: str, tmp_path: Path
) -> None:
    existing = tmp_path / "file.pem"
    existing.write_text("")
    given = {k: str(existing) if v == "__FILE__" else v for k, v in given.items()}
    with pytest.raises(ValidationError, match=said):
        Settings(**given)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SASL.items():
        monkeypatch.setenv(f"THREADVIEW_{name.upper()}", value)
    settings = Settings()
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == "s3cret"
    assert client_options(settings)["sasl_mechanism"] == "SCRAM-SHA-512"


def test_the_ca_and_the_client_certificate_are_loaded(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    make = "openssl req -x509 -newkey rsa:2048 -days 1 -subj /CN=threadview -passout pass:k3y"
    subprocess.run([*make.split(), "-keyout", key, "-out", cert], check=True, capture_output=True)
    tls: dict[str, Any] = {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": cert}
    settings = Settings(
        **tls, kafka_ssl_certfile=cert, kafka_ssl_keyfile=key, kafka_ssl_key_password="k3y"
    )
    context = client_options(settings)["ssl_context"]
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "threadview"),),)]
    with pytest.raises(ssl.SSLError):  # the key's password is needed, and checked
        client_options(
            Settings(
                **tls,
                kafka_ssl_certfile=cert,
                kafka_ssl_keyfile=key,
                kafka_ssl_key_password="wrong",
            )
        )

"""The build a service reports: version from the package metadata, commit and
build time from the settings (the image's build arguments), ``dev`` and no time
when unknown; bad values are refused at start."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import metadata

import pytest
from pydantic import ValidationError

from cardinsa.common.v1 import common_pb2
from cardinsa_foundation import __version__, metrics
from cardinsa_foundation.build import BuildInfo, package_version
from cardinsa_foundation.config import Settings
from cardinsa_foundation.server_info import ServerInfoProvider


def settings(**env: str) -> Settings:
    return Settings(_env_file=None, **env)  # type: ignore[call-arg,arg-type]


def test_the_version_is_the_installed_distributions() -> None:
    installed = metadata.version("cardinsa")
    assert __version__ == installed
    for package in ("cardinsa_identity", "cardinsa_company", "cardinsa_core.main"):
        assert package_version(package) == installed


def test_commit_and_time_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDINSA_BUILD_COMMIT", "4f2a9c1e7b3d")
    monkeypatch.setenv("CARDINSA_BUILD_TIME", "2026-12-07T21:00:00Z")
    loaded = Settings(_env_file=None)  # type: ignore[call-arg]
    assert loaded.build_commit == "4f2a9c1e7b3d"
    assert loaded.build_time == datetime(2026, 12, 7, 21, 0, tzinfo=UTC)


def test_unset_or_empty_build_is_dev_without_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # An image built without the arguments has them set and empty.
    monkeypatch.setenv("CARDINSA_BUILD_COMMIT", "")
    monkeypatch.setenv("CARDINSA_BUILD_TIME", "")
    loaded = Settings(_env_file=None)  # type: ignore[call-arg]
    info = BuildInfo.of("core", "cardinsa_core", commit=loaded.build_commit)
    assert (info.commit, info.build_time, info.build_time_text) == ("dev", None, "")


@pytest.mark.parametrize(
    "field",
    [
        {"build_commit": "abc def"},
        {"build_commit": "x" * 65},
        {"build_commit": 'a"}\n'},
        {"build_time": "yesterday"},
    ],
)
def test_a_malformed_build_is_refused(field: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        settings(**field)


async def test_server_info_and_the_metric_show_the_build() -> None:
    built = datetime(2026, 12, 7, 20, 15, 30, tzinfo=UTC)
    info = BuildInfo.of("unittest-svc", "cardinsa_core", commit="4f2a9c1e7b3d", build_time=built)
    message = await ServerInfoProvider(build=info, environment="test", apis=[]).build_message()
    assert (message.name, message.version, message.build) == (
        "unittest-svc",
        metadata.version("cardinsa"),
        "4f2a9c1e7b3d",
    )
    assert message.build_time.ToDatetime(tzinfo=UTC) == built
    metrics.set_build_info(info)
    labels = {
        "service": "unittest-svc",
        "version": metadata.version("cardinsa"),
        "commit": "4f2a9c1e7b3d",
        "build_time": "2026-12-07T20:15:30Z",
    }
    assert metrics.REGISTRY.get_sample_value("cardinsa_build_info", labels) == 1.0
    unknown = BuildInfo.of("unittest-svc", "cardinsa_core")
    blank = await ServerInfoProvider(build=unknown, environment="test", apis=[]).build_message()
    assert blank.build == "dev" and not blank.HasField("build_time")
    assert isinstance(blank, common_pb2.ServerInfo)

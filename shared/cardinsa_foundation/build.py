"""What a running service says about its build: version, commit and build time.

The version comes from the package metadata of the distribution that ships the
service's package (``importlib.metadata``), so it is the one ``pyproject.toml``
declares and the one the installed wheel carries. The commit and build time come
from the settings ``CARDINSA_BUILD_COMMIT`` / ``CARDINSA_BUILD_TIME``, which the
image build arguments set (deploy/docker/Dockerfile) and ``make up`` sets from
``git``. A process without them reports the commit ``dev`` and no build time.

GetServerInfo (``/v1/info/<service>``) and the ``cardinsa_build_info`` metric
both show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib import metadata

#: The distribution the product ships as (pyproject.toml's ``[project] name``).
DISTRIBUTION = "cardinsa"
#: The commit reported by a process whose build is not known (a working tree).
UNKNOWN_COMMIT = "dev"
#: The version reported when no distribution is installed (sources on sys.path).
UNKNOWN_VERSION = "0+unknown"


def package_version(package: str) -> str:
    """The version of the installed distribution that ships ``package``.

    A wheel install maps the package to its distribution; an editable install
    (the development virtualenv puts the source folders on ``sys.path``) does
    not, and the product's distribution is the one that declares it.
    """
    names = metadata.packages_distributions().get(package.split(".", maxsplit=1)[0]) or [
        DISTRIBUTION
    ]
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return UNKNOWN_VERSION


@dataclass(frozen=True, slots=True)
class BuildInfo:
    """One service's build, as GetServerInfo and the metrics report it."""

    service: str
    version: str
    commit: str = UNKNOWN_COMMIT
    build_time: datetime | None = None

    @classmethod
    def of(
        cls, service: str, package: str, *, commit: str = "", build_time: datetime | None = None
    ) -> BuildInfo:
        return cls(
            service=service,
            version=package_version(package),
            commit=commit or UNKNOWN_COMMIT,
            build_time=build_time,
        )

    @property
    def build_time_text(self) -> str:
        """RFC 3339 in UTC, or empty when unknown (the metric's label)."""
        if self.build_time is None:
            return ""
        return self.build_time.isoformat().replace("+00:00", "Z")

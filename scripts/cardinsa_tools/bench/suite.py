"""The suite under test: started here (cardinsa_tools.launcher) or already running."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cardinsa_tools.bench.profiles import (
    say,
)
from cardinsa_tools.launcher import SuiteNotReady, SuitePorts, SuiteRun, suite_environment
from cardinsa_tools.procfs import cmdline, cpu_seconds, listening_pids, stat_fields

# ------------------------------------------------------------------ the suite


@dataclass
class SuiteEndpoints(SuitePorts):
    """Where the suite listens, and how many workers each service runs."""

    workers: int = 1

    def metrics_ports(self, service: str) -> list[int]:
        base: int = getattr(self, f"{service}_metrics")
        return [base + index * self.step for index in range(self.workers)]


class Suite:
    """The suite under test: started here (and stopped at the end) or already running."""

    def __init__(self, endpoints: SuiteEndpoints, admin_url: str, state_dir: Path) -> None:
        self.endpoints = endpoints
        self.admin_url = admin_url
        self.state_dir = state_dir
        self.run: SuiteRun | None = None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The launcher's process when the suite was started here."""
        return self.run.process if self.run is not None else None

    # -- started here

    @classmethod
    def start(
        cls,
        state_dir: Path,
        workers: int,
        timeout_s: float,
        extra_env: dict[str, str] | None = None,
    ) -> Suite:
        from cardinsa_foundation.local_postgres import LocalPostgres

        state_dir.mkdir(parents=True, exist_ok=True)
        # Its port blocks are consecutive (worker i: port + i).
        ports = SuiteEndpoints.free(workers, step=1, gateway_metrics=False)
        ports.workers = workers
        pg_dir = state_dir / "postgres"
        env = suite_environment(
            ports,
            pg_dir,
            state_dir,
            # Load-generator artefacts (see the package docstring).
            CARDINSA_GATEWAY_RATE_LIMIT_RPS="1000000",
            CARDINSA_GATEWAY_RATE_LIMIT_BURST="1000000",
            CARDINSA_LOGIN_MAX_FAILURES_PER_ADDRESS="1000000000",
            CARDINSA_ACCESS_TOKEN_TTL_S="3600",  # noqa: S106 - a lifetime, not a secret
            CARDINSA_DEMO_ADMIN_PASSWORD=bench_password(state_dir),
            **(extra_env or {}),
        )
        suite = cls(ports, LocalPostgres(pg_dir, ports.postgres).admin_url(), state_dir)
        (state_dir / "access.log").unlink(missing_ok=True)  # one run's lines only
        say(f"starting the suite ({workers} worker(s) per service; log {state_dir / 'suite.log'})")

        def relay(line: str) -> None:
            if line.startswith("[cardinsa] "):
                say(f"suite: {line.strip()[len('[cardinsa] ') :]}")

        suite.run = SuiteRun(state_dir / "suite", env, state_dir / "suite.log", relay)
        suite.run.start(["--workers", str(workers), "--timeout", str(timeout_s)])
        try:
            suite.run.wait_ready(timeout_s + 60)
        except SuiteNotReady as error:
            raise RuntimeError(f"{str(error).splitlines()[0]} see suite.log") from None
        return suite

    # -- already running

    @classmethod
    def running(cls, state_dir: Path, workers: int) -> Suite:
        from cardinsa_company.settings import CompanyServiceSettings
        from cardinsa_core.settings import CoreSettings
        from cardinsa_foundation.local_postgres import LocalPostgres
        from cardinsa_gateway.settings import GatewaySettings
        from cardinsa_identity.settings import IdentitySettings

        identity, company, core = IdentitySettings(), CompanyServiceSettings(), CoreSettings()
        gateway = GatewaySettings()
        ports = SuiteEndpoints(
            postgres=identity.embedded_postgres_port,
            identity=identity.identity_port,
            company=company.company_port,
            core=core.core_port,
            identity_metrics=identity.identity_metrics_port,
            company_metrics=company.company_metrics_port,
            core_metrics=core.core_metrics_port,
            gateway=gateway.gateway_port,
            gateway_admin=gateway.gateway_admin_port,
            gateway_metrics=gateway.gateway_metrics_port,
            step=identity.worker_port_step,
            workers=workers,
        )
        admin = identity.database_admin_url or identity.database_url
        if admin is not None:
            admin_url = admin.get_secret_value()
        else:
            pg = LocalPostgres(identity.embedded_postgres_dir, identity.embedded_postgres_port)
            if not pg.is_running():
                raise SystemExit("--use-running: no running suite (start it with `make up`)")
            admin_url = pg.admin_url()
        say(f"using the running suite (gateway 127.0.0.1:{ports.gateway}, core :{ports.core})")
        return cls(ports, admin_url, state_dir)

    # -- common

    def pids(self) -> dict[str, int]:
        """Service processes (one per worker) and Envoy, found by their listening ports."""
        found: dict[str, int] = {}
        for service in ("identity", "company", "core"):
            for index in range(self.endpoints.workers):
                port = getattr(self.endpoints, service) + index * self.endpoints.step
                for pid in listening_pids(port):
                    name = service if self.endpoints.workers == 1 else f"{service}[{index}]"
                    found[name] = pid
        for pid in listening_pids(self.endpoints.gateway):
            found["envoy"] = pid
        return found

    def postgres_pids(self) -> list[int]:
        """The PostgreSQL processes of the suite started here (the postmaster and
        its children: the backends, the WAL writer, the checkpointer...), less
        autovacuum's, for CPU accounting; none with ``--use-running``."""
        if self.run is None:
            return []
        try:
            postmaster = int(
                (self.state_dir / "postgres" / "postmaster.pid").read_text().split()[0]
            )
        except (OSError, ValueError, IndexError):
            return []
        found = [postmaster]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            fields = stat_fields(int(entry.name))
            if fields is None or len(fields) < 2 or fields[1] != str(postmaster):
                continue
            if "autovacuum" not in cmdline(int(entry.name)):
                found.append(int(entry.name))
        return found

    def postgres_cpu(self) -> dict[int, float] | None:
        """CPU seconds so far of each of postgres_pids (None: not known here)."""
        pids = self.postgres_pids()
        return {pid: cpu_seconds([pid]) for pid in pids} if pids else None

    def postgres_cpu_since(self, before: dict[int, float] | None) -> float | None:
        """PostgreSQL's CPU seconds since ``before`` (postgres_cpu): of every
        process there now, what it used since (all of it when new); a process
        gone since (a closed connection's backend) is left out."""
        after = self.postgres_cpu()
        if before is None or after is None:
            return None
        return sum(max(0.0, used - before.get(pid, 0.0)) for pid, used in after.items())

    def stop(self) -> None:
        """The suite started here: SIGINT to its group (Ctrl-C), then what is left."""
        if self.run is None:
            return
        say("stopping the suite")
        self.run.stop(timeout_s=60)
        self.run.sweep(self.state_dir / "postgres", self.endpoints.postgres)
        self.run = None


def bench_password(state_dir: Path) -> str:
    """The bench accounts' password: random, made once and kept in the state dir."""
    path = state_dir / "accounts-password"
    state_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()

"""A Flower deployment on loopback: a SuperLink and SuperNodes (tests, benchmarks, trying it).

:class:`Deployment` starts ``flower-superlink`` and ``flower-supernode``
processes of the installed flwr (1.42: one HTTP API per SuperLink on
``--port``; each SuperNode needs its own Runtime API ``--port``), each in its
own process group, on free loopback ports, and writes the Flower
configuration file (``$FLWR_HOME/config.toml``) with a connection named
``local`` for ``flwr run``. Optionally over TLS (a throwaway CA and a server
certificate for 127.0.0.1/localhost, made with ``cryptography``) and with
SuperNode authentication (an ECDSA P-384 key pair per SuperNode in OpenSSH
format, each public key registered with ``flwr supernode register``).
:meth:`Deployment.close` stops every process it started, and only those,
whatever happened (it is a context manager).

Readiness is polled (a SuperNode is up once its log shows its node id), never
assumed after a fixed sleep.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .task import ROSTER_FILE, identity_path

APP = Path(__file__).resolve().parents[1]
ROOT = APP.parents[1]
BIN = Path(sys.executable).parent
NODE_ID = re.compile(r"SuperNode ID: (\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux /proc), so that none is left behind."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def wait_for(what: str, check, timeout: float, interval: float = 0.25):
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(interval)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the process that started it dies (Linux),
    even by SIGKILL (a timed-out test or benchmark), so no SuperLink or SuperNode
    outlives its owner; :meth:`Process.stop` is the normal way out."""
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL) != 0:  # pragma: no cover - not Linux
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


class Process:
    """One process of the deployment, in its own session, logging to a file."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.name, self.log = name, log
        self._out = open(log, "wb")  # closed in stop()
        # Run in the log's (temporary) folder: flower-superlink writes superlink.pid
        # into its working directory, which must not be the caller's checkout.
        self.popen = subprocess.Popen(
            args,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log.parent,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.known: set[int] = set()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def remember_children(self) -> None:
        if self.alive():
            self.known.update(_children(self.popen.pid))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process, its group and every descendant it started."""
        self.remember_children()
        for pid in [self.popen.pid, *sorted(self.known)]:
            for target in (lambda p: os.killpg(p, sig), lambda p: os.kill(p, sig)):
                try:
                    target(pid)
                except (ProcessLookupError, PermissionError):
                    pass

    def stop(self) -> None:
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.kill(signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - the kernel did not reap it
            pass
        self._out.close()


class Deployment:
    """A SuperLink and ``nodes`` SuperNodes, each holding one partition file."""

    def __init__(
        self,
        workdir: Path,
        partitions: list[Path],
        *,
        tls: bool = False,
        auth: bool = False,
        startup_timeout: float = 120.0,
    ) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.partitions, self.tls, self.auth = partitions, tls, auth
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.home = self.dir / "flwr-home"
        self.home.mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(APP)]),
            "FLWR_HOME": str(self.home),
            "FLWR_TELEMETRY_ENABLED": "0",
        }
        self.superlink: Process | None = None
        self.nodes: list[Process] = []
        self.node_ids: list[int] = []

    # -- setup --------------------------------------------------------------------------
    def __enter__(self) -> Deployment:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        link = [str(BIN / "flower-superlink"), "--host", "127.0.0.1", "--port", str(self.port)]
        link.append("--disable-runtime-dependency-installation")
        if self.tls:
            ca, cert, key = make_certificates(self.dir / "certs")
            link += ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert)]
            link += ["--ssl-keyfile", str(key)]
        else:
            link.append("--insecure")
        if self.auth:
            link.append("--enable-supernode-auth")
        self._write_connection()
        self.superlink = Process("superlink", link, self.dir / "superlink.log", self.env)
        wait_for(
            "the SuperLink",
            lambda: "Uvicorn running" in self.superlink.text() or self._died(self.superlink),
            self.startup_timeout,
        )
        self._check_alive(self.superlink)
        keys = [self._register_key(i) for i in range(len(self.partitions))] if self.auth else []
        for i, part in enumerate(self.partitions):
            args = [
                str(BIN / "flower-supernode"),
                "--superlink",
                f"127.0.0.1:{self.port}",
                "--port",
                str(free_port()),
                "--node-config",
                f'partition-file="{part}" identity-file="{identity_path(part)}" '
                f'roster-file="{Path(part).parent / ROSTER_FILE}"',
            ]
            args += ["--root-certificates", str(self.dir / "certs" / "ca.crt")] if self.tls else []
            args += [] if self.tls else ["--insecure"]
            args += ["--auth-supernode-private-key", str(keys[i])] if self.auth else []
            self.nodes.append(Process(f"node{i}", args, self.dir / f"node{i}.log", self.env))
        for node in self.nodes:
            match = wait_for(
                f"{node.name} to register",
                lambda node=node: NODE_ID.search(node.text()) or self._died(node),
                self.startup_timeout,
            )
            self._check_alive(node)
            self.node_ids.append(int(match.group(1)))
        for p in [self.superlink, *self.nodes]:
            p.remember_children()

    def _died(self, p: Process) -> bool:
        return not p.alive()

    def _check_alive(self, p: Process) -> None:
        if not p.alive():
            raise RuntimeError(f"{p.name} exited:\n{p.text()[-3000:]}")

    def _write_connection(self) -> None:
        lines = ["[superlink]", 'default = "local"', "", "[superlink.local]"]
        lines.append(f'address = "127.0.0.1:{self.port}"')
        if self.tls:
            lines.append(f'root-certificates = "{self.dir / "certs" / "ca.crt"}"')
        else:
            lines.append("insecure = true")
        (self.home / "config.toml").write_text("\n".join(lines) + "\n")

    def _register_key(self, i: int) -> Path:
        private, public = make_node_key(self.dir / "keys", f"node{i}")
        self.flwr("supernode", "register", str(public), "local")
        return private

    # -- use ----------------------------------------------------------------------------
    def flwr(self, *args: str, timeout: float = 300.0) -> str:
        """Run the ``flwr`` CLI against this deployment; its output (fails loudly)."""
        done = subprocess.run(
            [str(BIN / "flwr"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.dir,
        )
        if done.returncode != 0:
            raise RuntimeError(f"flwr {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def run_app(self, out_dir: Path, *, app: Path = APP, **config) -> None:
        """Start a run of ``app`` (returns at once; the ServerApp writes ``out_dir``)."""
        config["out-dir"] = str(out_dir)
        if app == APP:  # the roster prepare wrote beside the partitions: SecAgg/SecAgg+ run actively secure
            config.setdefault("roster-file", str(Path(self.partitions[0]).parent / ROSTER_FILE))
        config.setdefault("num-nodes", len(self.nodes))
        rc = " ".join(f"{k}={json.dumps(v)}" for k, v in config.items())
        self.flwr("run", str(app), "local", "--run-config", rc)

    def close(self) -> None:
        for p in [*self.nodes, self.superlink]:
            if p is not None:
                p.stop()


def read_rounds(out_dir: Path) -> list[dict]:
    path = Path(out_dir) / "rounds.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_finished(out_dir: Path) -> list[dict] | None:
    rounds = read_rounds(out_dir)
    return rounds if rounds and rounds[-1].get("kind") == "done" else None


# -- credentials --------------------------------------------------------------------------


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secagg-fl test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = directory / "ca.crt", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return paths


def make_node_key(directory: Path, name: str) -> tuple[Path, Path]:
    """A SuperNode's authentication key pair: ECDSA P-384, OpenSSH private and public files
    (what ``ssh-keygen -t ecdsa -b 384`` writes; flwr 1.42 wants a NIST EC key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = directory / name, directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    return private, public

"""A one-node SLURM cluster on this machine, on 127.0.0.1 only: for
tests/test_slurm.py, and for trying profiles/slurm by hand (as root):

    .venv/bin/python tests/slurm_cluster.py [--install]     # Ctrl-C stops it

Debian's slurm-wlm and munge.  slurmctld and slurmd run in the foreground as
children of this process (no systemd), with linuxproc process tracking, no
cgroups and no accounting (so job status comes from squeue, not sacct), and one
fake GPU (gres.conf points gpu 0 at /dev/null) so that GPU requests are accepted
and scheduled.  Authentication is a private munged (its own key and socket in the
state folder); the daemons listen on free ports of 127.0.0.1 only.  The
configuration goes to /etc/slurm/slurm.conf and gres.conf, where every SLURM
command looks for it; files already there are put back by stop().  Nothing is
touched when a slurmctld or slurmd already runs here.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONF_DIR = Path("/etc/slurm")
PACKAGES = ("slurm-wlm", "munge")
# Daemons from /usr/sbin, commands from /usr/bin (root's PATH may lack sbin).
BINARIES = ("slurmctld", "slurmd", "munged", "munge", "sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])
NODE = "localhost"
PARTITION = "debug"


class Unavailable(Exception):
    """This machine cannot run the cluster; the message says why (a reason to skip)."""


class ClusterError(Exception):
    """The cluster was set up but did not come up or misbehaved (a failure)."""


def which(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if which(name) is None]


def install(timeout: float = 1200) -> str:
    """``apt-get install slurm-wlm munge`` (Debian, as root); ``apt-get update``
    first only when the plain install fails.  Returns apt's output tail."""
    if os.geteuid() != 0:
        raise Unavailable("installing slurm-wlm and munge needs root")
    if which("apt-get") is None:
        raise Unavailable("no apt-get here: install SLURM (slurmctld, slurmd, client commands) and munge by hand")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    output = ""
    for attempt in (["apt-get", "update", "-q"], None):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        output = (result.stdout + result.stderr)[-3000:]
        if result.returncode == 0 and not missing_binaries():
            return output
        if attempt is None:
            break
        subprocess.run(attempt, env=env, capture_output=True, text=True, timeout=timeout)
    raise Unavailable(
        f"apt-get install {' '.join(PACKAGES)} failed (missing: {', '.join(missing_binaries())}):\n{output}"
    )


def running_daemons() -> dict[int, str]:
    """SLURM daemons already running on this machine: {pid: name}."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if name in ("slurmctld", "slurmd"):
                found[int(entry.name)] = name
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_mb() -> int:
    try:
        text = Path("/proc/meminfo").read_text()
        return int(re.search(r"MemTotal:\s+(\d+) kB", text).group(1)) // 1024
    except (OSError, AttributeError):
        return 4096


class LocalSlurm:
    """start() / stop(), or ``with LocalSlurm(folder) as cluster:``."""

    def __init__(self, root: Path, cpus: int | None = None, real_memory_mb: int | None = None):
        self.root = Path(root).resolve()
        # The node's size is a label here (config_overrides; memory is not a
        # consumable resource): big enough for the profile's requests.
        self.cpus = cpus or max(2, os.cpu_count() or 2)
        self.real_memory_mb = real_memory_mb or max(memory_mb(), 16000)
        self.processes: dict[str, subprocess.Popen] = {}
        self.backups: dict[Path, Path | None] = {}
        self.created_conf_dir = False
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.log_dir = self.root / "log"

    # --- the configuration ----------------------------------------------------------

    def slurm_conf(self, ctld_port: int, slurmd_port: int) -> str:
        root = self.root
        return f"""\
# Written by tests/slurm_cluster.py for a one-node test cluster; put back on stop.
ClusterName=cnnvis-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
# Listen on 127.0.0.1 (the hosts' addresses below), not on every address.
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# Finished jobs stay visible to squeue (the only status source here) for an hour.
MinJobAge=3600
GresTypes=gpu
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.real_memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""

    @staticmethod
    def gres_conf() -> str:
        # A gpu needs a device file; slurmd ignores a bare Count=1.
        return f"""\
# Written by tests/slurm_cluster.py: one fake GPU (nothing is bound to it).
AutoDetect=off
NodeName={NODE} Name=gpu File=/dev/null
"""

    def _write_conf(self, name: str, text: str) -> None:
        path = CONF_DIR / name
        if path not in self.backups:
            if path.exists():
                backup = self.root / "backup" / name
                backup.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, backup)
                self.backups[path] = backup
            else:
                self.backups[path] = None
        path.write_text(text)

    def _restore_conf(self) -> None:
        for path, backup in self.backups.items():
            try:
                if backup is None:
                    path.unlink(missing_ok=True)
                else:
                    shutil.copy2(backup, path)
            except OSError as error:
                print(f"slurm_cluster: could not restore {path}: {error}", file=sys.stderr)
        self.backups.clear()
        if self.created_conf_dir:
            try:
                CONF_DIR.rmdir()
            except OSError:
                pass

    # --- the daemons ----------------------------------------------------------------

    def environment(self, base: dict | None = None) -> dict:
        """An environment for SLURM commands and Snakemake: no variables of an
        enclosing SLURM job, the configuration in /etc/slurm."""
        env = {
            k: v for k, v in (base or os.environ).items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_"))
        }
        env["SLURM_CONF"] = str(CONF_DIR / "slurm.conf")
        env["PATH"] = os.pathsep.join([env.get("PATH", ""), "/usr/sbin", "/sbin"])
        return env

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.out", "ab")
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=self.environment(),
            )
        finally:
            log.close()
        self.processes[name] = process
        return process

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise ClusterError(f"{name} exited with status {process.returncode}\n{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A SLURM client command (squeue, sinfo, scontrol...) against this cluster."""
        command = [which(args[0]) or args[0], *args[1:]]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=self.environment())
        if check and result.returncode != 0:
            raise ClusterError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def start(self, timeout: float = 90) -> LocalSlurm:
        missing = missing_binaries()
        if missing:
            raise Unavailable(f"slurm-wlm/munge not installed (no {', '.join(missing)})")
        if os.geteuid() != 0:
            raise Unavailable("the test cluster runs its daemons as root (SlurmUser=root) and writes /etc/slurm")
        # Job steps (srun) reach this host by its name: it must resolve to loopback,
        # or the cluster's traffic would leave 127.0.0.0/8.
        try:
            address = socket.gethostbyname(socket.gethostname())
        except OSError as error:
            raise Unavailable(f"cannot resolve this host's name: {error}") from None
        if not address.startswith("127."):
            raise Unavailable(
                f"this host's name resolves to {address}, not a loopback address; "
                "the local cluster must stay on 127.0.0.0/8"
            )
        running = running_daemons()
        if running:
            listing = ", ".join(f"{name} (pid {pid})" for pid, name in sorted(running.items()))
            raise Unavailable(f"SLURM already runs on this machine: {listing}; not replacing its configuration")

        for sub in ("state", "spool", "log", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # munged insists on private key and socket folders.
        os.chmod(self.root / "munge", 0o711)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        os.chmod(key, 0o400)
        if not CONF_DIR.is_dir():
            CONF_DIR.mkdir(parents=True)
            self.created_conf_dir = True
        ctld_port = free_port()
        slurmd_port = free_port()
        while slurmd_port == ctld_port:
            slurmd_port = free_port()
        self._write_conf("slurm.conf", self.slurm_conf(ctld_port, slurmd_port))
        self._write_conf("gres.conf", self.gres_conf())
        atexit.register(self.stop)

        self._spawn(
            "munged",
            [
                which("munged"),
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
                "--num-threads=2",
            ],
        )
        self._wait("munged", self._munge_works, 20)
        self._spawn("slurmctld", [which("slurmctld"), "-D"])
        self._spawn("slurmd", [which("slurmd"), "-D", "-N", NODE])
        self._wait("the node to be idle", self._node_idle, timeout)
        node = self.run("scontrol", "show", "node", NODE).stdout
        if not re.search(r"\bGres=gpu:1\b", node):
            raise ClusterError(f"the node has no fake GPU:\n{node}\n{self.log_tail()}")
        return self

    def _munge_works(self) -> bool:
        if not self.munge_socket.exists():
            return False
        encode = subprocess.run([which("munge"), "-S", str(self.munge_socket), "-n"], capture_output=True)
        if encode.returncode != 0:
            return False
        decode = subprocess.run(
            [which("unmunge") or "unmunge", "-S", str(self.munge_socket)], input=encode.stdout, capture_output=True
        )
        return decode.returncode == 0

    def _node_idle(self) -> bool:
        result = self.run("sinfo", "--noheader", "--nodes", NODE, "--format", "%T", check=False)
        return result.returncode == 0 and result.stdout.strip() == "idle"

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if ready():
                return
            time.sleep(0.5)
        state = self.run("sinfo", "--Node", "--long", check=False)
        raise ClusterError(
            f"timed out after {timeout:.0f}s waiting for {what}\n{state.stdout}{state.stderr}\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Cancel what is still queued, stop the daemons this object started (by
        process id: SIGTERM, then SIGKILL), put /etc/slurm back."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            try:
                jobs = self.run(
                    "squeue", "--noheader", "--format", "%A", "--states", "PENDING,RUNNING,SUSPENDED", check=False
                ).stdout.split()
                if jobs:
                    self.run("scancel", *sorted(set(jobs)), check=False)
                    deadline = time.monotonic() + 20
                    while (
                        time.monotonic() < deadline
                        and self.run(
                            "squeue", "--noheader", "--states", "PENDING,RUNNING,COMPLETING", check=False
                        ).stdout.strip()
                    ):
                        time.sleep(0.5)
            except (subprocess.SubprocessError, OSError, ClusterError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._restore_conf()

    def __enter__(self) -> LocalSlurm:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--install", action="store_true", help="apt-get install slurm-wlm munge when missing")
    parser.add_argument("--dir", type=Path, help="state and logs folder (default: a new temporary folder)")
    args = parser.parse_args(argv)
    if args.install and missing_binaries():
        print("installing slurm-wlm and munge...", flush=True)
        install()
    root = args.dir or Path(tempfile.mkdtemp(prefix="cnnvis-slurm-"))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        with LocalSlurm(root) as cluster:
            print(cluster.run("sinfo").stdout)
            print(
                f"SLURM is up (logs: {cluster.log_dir}).  In another shell, from the repository root:\n"
                "    snakemake --workflow-profile profiles/slurm --slurm-status-command squeue\n"
                "Ctrl-C stops the cluster.",
                flush=True,
            )
            while not stop:
                cluster._check_alive()
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    except Unavailable as error:
        print(f"cannot start the cluster: {error}", file=sys.stderr)
        return 2
    except ClusterError as error:
        print(f"the cluster failed: {error}", file=sys.stderr)
        return 1
    print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Two hosts on this machine: network namespaces joined by a veth pair, each with an address of its own, and
an sshd in the second one that accepts a key made for the test. Needs root, iproute2 and openssh-server
(.ci/run installs it).

    host A  (namespace, 10.211.N.1 on hvd0) --veth-- host B (namespace, 10.211.N.2 on hvd0, sshd)

Commands run "on" a host with ``ip netns exec <namespace> ...``; both hosts see this machine's files, as
hosts of a cluster see a shared filesystem.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

INTERFACE = "hvd0"


@dataclass
class TwoHosts:
    tag: str
    folder: Path
    subnet: int
    sshd: subprocess.Popen | None = None
    namespaces: list[str] = field(default_factory=list)

    @property
    def addresses(self) -> tuple[str, str]:
        return f"10.211.{self.subnet}.1", f"10.211.{self.subnet}.2"

    @property
    def identity_file(self) -> Path:
        return self.folder / "id_ed25519"

    def on(self, host: int, command: list[str]) -> list[str]:
        """``command`` as run on host 0 (A) or 1 (B)."""
        return ["ip", "netns", "exec", self.namespaces[host], *command]

    def start(self) -> None:
        a, b = f"sqa{self.tag}", f"sqb{self.tag}"
        self.namespaces = [a, b]
        for namespace in self.namespaces:
            _ip("netns", "add", namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        for namespace, address in zip(self.namespaces, self.addresses, strict=True):
            _ip("link", "set", namespace, "netns", namespace)
            _ip("-n", namespace, "link", "set", namespace, "name", INTERFACE)
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", INTERFACE)
            _ip("-n", namespace, "link", "set", INTERFACE, "up")
        self._start_sshd()

    def _start_sshd(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for key in (self.identity_file, self.folder / "host_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (self.folder / "authorized_keys").write_text(self.identity_file.with_suffix(".pub").read_text())
        config = self.folder / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {self.addresses[1]}", "Port 22", f"HostKey {self.folder / 'host_ed25519'}",
            f"PidFile {self.folder / 'sshd.pid'}", f"AuthorizedKeysFile {self.folder / 'authorized_keys'}",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "StrictModes no", "PrintMotd no", "",
        ]))
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
        log = (self.folder / "sshd.log").open("wb")
        self.sshd = subprocess.Popen(self.on(1, [shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f",
                                                 str(config)]), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while self.ssh(["true"]).returncode != 0:
            if self.sshd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd on host B did not come up:\n{(self.folder / 'sshd.log').read_text()}")
            time.sleep(0.2)

    def ssh(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        """``command`` run on host B over ssh from host A, as horovodrun reaches it."""
        return subprocess.run(self.on(0, [
            "ssh", "-o", "PasswordAuthentication=no", "-o", "StrictHostKeyChecking=no", "-o", "ConnectTimeout=5",
            "-i", str(self.identity_file), self.addresses[1], *command]), capture_output=True, text=True)

    def stop(self) -> None:
        if self.sshd is not None and self.sshd.poll() is None:
            self.sshd.terminate()
            self.sshd.wait(timeout=30)
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], check=False)  # removes the veth pair with it
        # the host keys horovodrun's ssh accepted for host B
        subprocess.run(["ssh-keygen", "-R", self.addresses[1]], check=False, capture_output=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def two_hosts(folder: Path) -> TwoHosts:
    """Create and start the two hosts; the caller stops them."""
    tag = str(os.getpid() % 100000)
    hosts = TwoHosts(tag=tag, folder=folder, subnet=os.getpid() % 250 + 1)
    try:
        hosts.start()
    except BaseException:
        hosts.stop()
        raise
    return hosts

"""What `recsys serve` is started with, and its defaults (the CLI's flags take them from here).
Light to import: a wrong --run is refused before the server's libraries load."""

from __future__ import annotations

from dataclasses import dataclass

from recsys.errors import UsageError


@dataclass
class Settings:
    run: str
    repo: str
    # how often the item cache checks for a new materialization of the online store (0: never)
    refresh_seconds: float = 10.0
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8000
    workers: int = 1  # server processes, each with the model and its caches
    retrieval: str = ""  # a retrieval run with its index (`recsys index`): POST /recommend
    watch: str = ""  # a folder of runs: serve its newest finished run, swap in newer ones
    watch_seconds: float = 5.0  # how often --watch looks for a newer run
    log_served: bool = True  # every answer's items into the repo's served log
    log_flush_seconds: float = 1.0  # how often the served log is written (a kill -9 loses this)

    def check(self) -> None:
        if not 0 < self.port < 65536:
            raise UsageError(f"port {self.port}: choose 1..65535")
        if self.workers < 1:
            raise UsageError(f"workers {self.workers}: need at least one")
        if self.watch_seconds <= 0:
            raise UsageError(f"watch_seconds {self.watch_seconds}: must be more than 0")
        if self.log_flush_seconds <= 0:
            raise UsageError(f"log_flush_seconds {self.log_flush_seconds}: must be more than 0")
        if self.refresh_seconds < 0:
            raise UsageError(f"refresh_seconds {self.refresh_seconds}: must be at least 0")


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now (for a server started next)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

"""
Graceful shutdown: let open connections receive what they are owed, then
close the rest.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from twisted.application.service import Service
from twisted.internet import task
from twisted.logger import Logger

log = Logger(namespace="twisted_mtls")


@dataclass(frozen=True)
class ShutdownReport:
    """
    How the connections open at shutdown were closed.
    """

    clean: int
    handshaking: int
    timed_out: int


async def drain(factory, clock, timeout: float, step: float = 0.05) -> ShutdownReport:
    """
    Close every connection of C{factory}: served ones cleanly once the
    echoes of the lines they sent have been written (they read nothing
    more), handshaking ones at once; after C{timeout} seconds abort
    whatever is still open. Log and return how many were closed how.
    """
    served = [p for p in factory.active if p.handshakeDone]
    handshaking = [p for p in factory.active if not p.handshakeDone]
    for protocol in handshaking:
        protocol.closeBecause("the server is shutting down", abort=True, label="shutdown")
    for protocol in served:
        protocol.closeBecause("the server is shutting down", label="shutdown", grace=None)
    waited = 0.0
    while factory.active and waited < timeout:
        await task.deferLater(clock, min(step, timeout - waited), lambda: None)
        waited += step
    stuck = [p for p in factory.active if p in served]
    for protocol in list(factory.active):
        protocol.closeBecause("still open after shutdown_timeout", abort=True)
    for _ in range(100):  # an abort completes within a reactor iteration or two
        if not factory.active:
            break
        await task.deferLater(clock, 0, lambda: None)
    report = ShutdownReport(len(served) - len(stuck), len(handshaking), len(stuck))
    log.info(
        "shut down: {clean} connections closed cleanly, {handshaking} aborted "
        "during their handshake, {timed_out} aborted after {shutdown_timeout:g} s",
        event="shutdown",
        clean=report.clean,
        handshaking=report.handshaking,
        timed_out=report.timed_out,
        shutdown_timeout=timeout,
    )
    return report



class SignalShutdown(Service):
    """
    Makes SIGTERM and SIGINT stop the reactor gracefully (the services'
    stopService runs) and the process exit with status 0, rather than
    twistd's default of re-raising the signal once stopped.
    """

    name = "signals"
    _previous: dict = {}

    def __init__(self, reactor) -> None:
        self.reactor = reactor

    def startService(self) -> None:
        super().startService()
        # After the reactor has installed its own handlers, which ours replace.
        self.reactor.callWhenRunning(self._install)

    def _install(self) -> None:
        if not self.running:
            return
        self._previous = {
            number: signal.signal(number, self._onSignal)
            for number in (signal.SIGTERM, signal.SIGINT)
        }

    def stopService(self) -> None:
        super().stopService()
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _onSignal(self, number, frame) -> None:
        self.reactor.callFromThread(self._stop, signal.Signals(number).name)

    def _stop(self, name: str) -> None:
        log.info("received {signal}: shutting down gracefully", event="stopping", signal=name)
        if self.reactor.running:
            self.reactor.stop()

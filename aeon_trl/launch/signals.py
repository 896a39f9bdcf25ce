"""Signals that stop a run, held until the end of a training iteration and kept away from env workers.

A signal handler runs in the main thread between two bytecodes of whatever the loop is doing: between the
parameter updates of one optimizer step, or after a batch was collected but before the frame counter moved. A
checkpoint written there is a state no uninterrupted run passes through. So while the training loop runs
(``hold()``), a guard's handler only records the signal; the driver acts on it at the end of the iteration, where
networks, optimizer, normalization statistics, schedules, counters and RNG all agree.

Env worker processes must never act on these signals: a terminal's Ctrl-C and SLURM signal every process of the
foreground group / job step, and a worker that dies of it (or prints its KeyboardInterrupt / BrokenPipeError) takes
the env away from the checkpoint the main process is about to write. ``blind_children()`` blocks the signals in the
main thread while envs create their workers: the mask is inherited across fork and exec, so those workers never
receive them (the main process still does, when the block ends).

- ``PreemptionGuard``: SLURM's preemption signal (USR2), handed on to submitit's handler (``aeon_trl.launch.job``).
- ``StopGuard``: SIGINT / SIGTERM of ``aeon-train``: the first stops after the iteration (checkpoint, logs, exit
  128 + signum), a second one quits at once.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from multiprocessing import resource_tracker
from typing import Callable


class SignalGuard:
    """Handlers for ``signums``: held while ``holding`` (``pending`` is set, ``received`` says which), acted on
    at once otherwise (``_now``). Forked processes that inherit the handler ignore the signals."""

    def __init__(self, signums):
        self.signums = tuple(signums)
        self.main_pid = os.getpid()
        self.holding = False
        self.pending = False
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def install(self):
        if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
            return self
        for signum in self.signums:
            previous = signal.getsignal(signum)
            if previous is not self._handle and self._takes_over(previous):
                self._previous[signum] = previous
                signal.signal(signum, self._handle)
        return self

    def _takes_over(self, previous) -> bool:
        return True

    def uninstall(self) -> None:
        if os.getpid() != self.main_pid:
            return
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self.main_pid:  # a forked env worker: the main process handles the signal
            return
        if self.holding:
            self._held(signum)
        else:
            self._now(signum)

    def _held(self, signum: int) -> None:
        self.pending, self.received = True, signum

    def _now(self, signum: int) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def hold(self):
        self.holding = True
        try:
            yield self
        finally:
            self.holding = False
        self._released()

    def _released(self) -> None:
        """Leaving ``hold()`` normally, with a signal perhaps still pending."""

    @contextlib.contextmanager
    def blind_children(self):
        """Processes started inside never receive the signals: they are blocked in the main thread, and the mask
        is inherited across fork and exec. The main process still handles them (through another thread, or
        when the block ends)."""
        # multiprocessing's resource tracker is started with the first spawned worker, and starting it unblocks
        # SIGINT/SIGTERM in the calling thread (resource_tracker.ensure_running): start it before blocking.
        resource_tracker.ensure_running()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, set(self.signums))
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a signal that came meanwhile is handled here


class PreemptionGuard(SignalGuard):
    """The job's handler for submitit's preemption signal, installed over submitit's own for the whole job.

    - While ``holding`` (the training loop runs), the signal only sets ``pending``; ``deliver_pending()`` at the
      end of an iteration hands it to submitit's handler (checkpoint(), scontrol requeue, exit).
    - Elsewhere it goes to submitit's handler at once.
    - Env workers are blind to it (``blind_children``): with submitit's handler, a worker would call checkpoint()
      on its stale copy of the job and requeue the job under the main process's feet (seen on the local cluster).
      A worker forked at another time still inherits this handler, which ignores it outside the main PID.
    """

    def __init__(self, signum: int | None = None):
        self.signum = signum if signum is not None else preemption_signal()
        super().__init__([self.signum])

    def _takes_over(self, previous) -> bool:
        return callable(previous)  # submitit's; with none, nothing to guard

    def _held(self, signum: int) -> None:
        super()._held(signum)
        print(f"[aeon] caught {signal.Signals(signum).name}: checkpoint at the end of this iteration", flush=True)

    def _now(self, signum: int) -> None:
        self._deliver()

    def _deliver(self) -> None:
        self.pending = False
        previous = self._previous.get(self.signum)
        if previous is None:
            return
        try:
            previous(self.signum, None)
        except subprocess.CalledProcessError as exc:
            # submitit's `scontrol requeue` failed. At a real preemption SLURM requeues the job itself
            # (PreemptMode=REQUEUE) and may already have: the checkpoint is on disk, so leave without a result
            # file (an error pickle would tell the client the job failed while its requeued run goes on).
            print(f"[aeon] {' '.join(map(str, exc.cmd))} failed ({exc.returncode}): SLURM is requeueing this "
                  "job itself, or it cannot be requeued; exiting after the checkpoint", flush=True)
            sys.exit(-1)

    def deliver_pending(self) -> None:
        if self.pending:
            self._deliver()

    def _released(self) -> None:
        self.deliver_pending()  # a signal held after the last iteration's callback: deliver it now


def preemption_signal() -> int:
    """The signal submitit checkpoints on (USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


class StopGuard(SignalGuard):
    """SIGINT / SIGTERM for a run in a terminal or under a plain process manager.

    - The first signal while the loop runs: ``pending``; the driver stops after this iteration, writes the
      checkpoint and the logs; the command exits ``128 + signum`` (130 for Ctrl-C, 143 for SIGTERM).
    - A second signal, or one outside the loop (building envs, the final evaluation: the checkpoint on disk is
      then the newest state): quit at once, env workers killed first, exit ``128 + signum``, no traceback.
    """

    def __init__(self, signums=(signal.SIGINT, signal.SIGTERM), stream=sys.stderr):
        super().__init__(signums)
        self.stream = stream
        self.on_quit: Callable[[], str] = lambda: ""  # what to add to the "quitting now" line (how to resume)

    def _held(self, signum: int) -> None:
        if self.pending:  # the second one
            self._now(signum)
        super()._held(signum)
        print(f"\n{signal.Signals(signum).name}: stopping after this iteration and writing a checkpoint "
              "(Ctrl-C again to quit now)", file=self.stream, flush=True)

    def _now(self, signum: int) -> None:
        for signum_ in self.signums:  # from here on, the default: a third Ctrl-C kills at once
            signal.signal(signum_, signal.SIG_DFL)
        kill_worker_processes()
        print(f"\n{signal.Signals(signum).name}: quitting now{self.on_quit()}", file=self.stream, flush=True)
        os._exit(128 + signum)


def kill_worker_processes() -> None:
    """SIGKILL this process's multiprocessing children (env workers) and reap them: they are blind to INT/TERM,
    and a worker left to find its pipe closed prints a BrokenPipeError traceback."""
    children = multiprocessing.active_children()
    for child in children:
        child.kill()
    for child in children:
        child.join(timeout=5)

"""Starting one sandboxed process and reading what it says, without trusting any of it.

Both backends hand this module a ready command line. It starts the process in its own session
(and cgroup, and as the sandbox uid when the service is root), reads its merged output into a
bounded ring buffer and its result document from a pipe (an inherited descriptor) up to a cap,
kills everything on timeout or cancellation, and turns the result into a checked dict. Nothing
here blocks the event loop: output and results arrive on pipes read by asyncio, and the small,
capped result document is parsed in a worker thread under a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mgx_agent.sandbox.limits import RunCgroup, apply_rlimits, join_from_child

OUTPUT_BUFFER_BYTES = 64 * 1024
OUTPUT_READ_LIMIT = 16 * 1024 * 1024
OUTPUT_TAIL_CHARS = 4096
RESULT_MAX_BYTES = 256 * 1024
FAILURE_CHARS = 1500
_PARSE_DEADLINE_SECONDS = 2.0
_PR_SET_DUMPABLE = 4
_LIBC = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class ChildLimits:
    memory_bytes: int
    cpu_seconds: int
    max_processes: int | None  # RLIMIT_NPROC, only when no cgroup holds the run
    cgroup_procs: list[str]
    uid: int | None  # switch to this uid (and gid) before exec; None keeps the service's


def _prepare_child(limits: ChildLimits) -> None:
    """Runs in the child between fork and exec: cgroup first (needs the service's rights)."""
    join_from_child(limits.cgroup_procs)
    apply_rlimits(limits.memory_bytes, limits.cpu_seconds, limits.max_processes)
    if limits.uid is not None:
        os.setgroups([])
        os.setresgid(limits.uid, limits.uid, limits.uid)
        os.setresuid(limits.uid, limits.uid, limits.uid)
        # Changing uid makes a process non-dumpable; bwrap needs its own /proc/self.
        _LIBC.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)


@dataclass(frozen=True)
class Execution:
    exit_code: int | None
    timed_out: bool
    duration_seconds: float
    output: str
    result: dict[str, Any] | None
    result_problem: str | None
    peak_memory_bytes: int | None


async def _read_ring(stream: asyncio.StreamReader, buffer: bytearray, pipe: asyncio.BaseTransport) -> None:
    """Keep the last OUTPUT_BUFFER_BYTES; past OUTPUT_READ_LIMIT close the pipe, so a flood of
    output costs the event loop nothing more (the writer gets EPIPE)."""
    total = 0
    while chunk := await stream.read(65536):
        total += len(chunk)
        buffer.extend(chunk)
        if len(buffer) > OUTPUT_BUFFER_BYTES:
            del buffer[: len(buffer) - OUTPUT_BUFFER_BYTES]
        if total > OUTPUT_READ_LIMIT:
            buffer.extend(b"\n[sandbox] output cut off after %d MiB\n" % (OUTPUT_READ_LIMIT >> 20))
            pipe.close()
            return


async def _read_capped(stream: asyncio.StreamReader, buffer: bytearray, pipe: asyncio.BaseTransport) -> bool:
    """Read until EOF up to the cap; False (and the pipe closed) once the writer exceeds it."""
    while chunk := await stream.read(65536):
        if len(buffer) + len(chunk) > RESULT_MAX_BYTES:
            buffer.clear()
            pipe.close()
            return False
        buffer.extend(chunk)
    return True


async def _open_pipe(limit: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport, int]:
    """A pipe whose read end the event loop owns; the write end is for the child.

    The child's output and result both come through pipes of our own rather than the
    subprocess transport's: a process's exit is then never tied to a pipe that generated code
    keeps open, fills or floods."""
    read_fd, write_fd = os.pipe()
    os.set_inheritable(write_fd, True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
    )
    return reader, transport, write_fd


def _kill(process: asyncio.subprocess.Process, cgroup: RunCgroup | None) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        process.kill()
    if cgroup is not None:
        cgroup.kill_all()


async def execute(
    command_for: Callable[[int], list[str]],
    *,
    env: dict[str, str],
    cwd: str,
    limits: ChildLimits,
    cgroup: RunCgroup | None,
    timeout_seconds: float,
) -> Execution:
    """Run ``command_for(fd)``: the command line, told which descriptor carries the result."""
    output_reader, output_pipe, output_fd = await _open_pipe(OUTPUT_BUFFER_BYTES)
    reader, transport, write_fd = await _open_pipe(RESULT_MAX_BYTES)
    started = time.perf_counter()
    try:
        process = await asyncio.create_subprocess_exec(
            *command_for(write_fd),
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output_fd,
            stderr=output_fd,
            start_new_session=True,
            pass_fds=(write_fd,),
            preexec_fn=lambda: _prepare_child(limits),
        )
    except BaseException:
        transport.close()
        output_pipe.close()
        raise
    finally:
        os.close(write_fd)
        os.close(output_fd)
    output = bytearray()
    result = bytearray()
    output_task = asyncio.create_task(_read_ring(output_reader, output, output_pipe))
    result_task = asyncio.create_task(_read_capped(reader, result, transport))
    timed_out = False
    try:
        await asyncio.wait_for(process.wait(), timeout_seconds)
    except TimeoutError:
        timed_out = True
    finally:
        # On every path out (normal end, timeout, cancellation) nothing of the run survives.
        if process.returncode is None:
            _kill(process, cgroup)
            await asyncio.shield(process.wait())
        elif cgroup is not None:
            await asyncio.shield(asyncio.to_thread(cgroup.kill_all))
        # A process that escaped every kill could hold a pipe open: wait a moment, no more.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(asyncio.gather(output_task, result_task)), 1.0)
        output_task.cancel()
        result_task.cancel()
        transport.close()
        output_pipe.close()
    duration = time.perf_counter() - started
    fits = (
        result_task.done()
        and not result_task.cancelled()
        and result_task.exception() is None
        and result_task.result()
    )
    document, problem = None, None
    if timed_out:
        problem = "the test run was killed at the wall-clock timeout"
    elif not fits:
        problem = f"the test runner's result was larger than {RESULT_MAX_BYTES} bytes"
    elif not result:
        problem = "the test runner reported no result (it was killed or exited early)"
    else:
        try:
            document = await asyncio.wait_for(
                asyncio.to_thread(parse_result, bytes(result)), _PARSE_DEADLINE_SECONDS
            )
        except (ValueError, TimeoutError) as exc:
            problem = f"the test runner's result is not valid: {exc}"
        except RecursionError:  # the tests can write to the result's pipe too
            problem = "the test runner's result is not valid: it is nested too deeply"
    return Execution(
        exit_code=process.returncode,
        timed_out=timed_out,
        duration_seconds=duration,
        output=_text(output.decode("utf-8", errors="replace")),
        result=document,
        result_problem=problem,
        peak_memory_bytes=cgroup.peak_memory_bytes() if cgroup else None,
    )


_COUNTS = ("passed", "failed", "errors", "skipped")


def _text(value: str) -> str:
    """What the tests printed, without NUL characters (U+FFFD instead): PostgreSQL stores none
    in text or jsonb, so a test printing one would otherwise fail the run's write."""
    return value.replace("\x00", "\ufffd")


def parse_result(raw: bytes) -> dict[str, Any]:
    """Check the launcher's document field by field; anything odd is a ValueError."""
    data = json.loads(raw.decode("utf-8", errors="replace"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    checked: dict[str, Any] = {}
    for key in (*_COUNTS, "exit_code"):
        value = data.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 10**6:
            raise ValueError(f"{key} is not a count")
        checked[key] = value
    failures = data.get("failures", [])
    if not isinstance(failures, list):
        raise ValueError("failures is not a list")
    checked["failures"] = [
        {"test": _text(str(item.get("test", ""))[:300]), "output": _text(str(item.get("output", ""))[-FAILURE_CHARS:])}
        for item in failures[:20]
        if isinstance(item, dict)
    ]
    return checked

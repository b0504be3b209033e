"""Many processes, one run: jax.distributed start-up and the checks that keep it honest.

A multi-host run is N copies of the same command, one per host (or per GPU group),
joined through a coordinator (process 0's address). Start-up is either explicit
(--coordinator HOST:PORT --num-processes N --process-id I) or detected by JAX from the
cluster (--distributed: Cloud TPU pod slices, SLURM, Open MPI, GKE). Then every process
checks that it runs the same config as process 0, so a stale override on one host is a
clear error instead of a silent divergence or a hang in the first collective.

JAX ends a process that cannot join (the coordinator unreachable, a process missing)
with a C++ abort after its initialization timeout; a watchdog fires first and says which
address was tried and what to check.
"""

import json
import logging
import os
import socket
import sys
import threading
import time

import jax
import numpy as np
from jax._src import distributed as jax_distributed  # the coordinator's key-value store has no public API
from jax.experimental import multihost_utils

from pix2pixhd_jax import checkpoint
from pix2pixhd_jax.runtime import console
from pix2pixhd_jax.errors import DistributedError

_KEY = "pix2pixhd_jax/config/"


def initialize_from_args(args):
    """Join the run where the flags ask for many processes, then start JAX's backends (which must
    come after joining); returns whether this is a multi-process run."""
    many = not (args.coordinator is None and args.num_processes is None and args.process_id is None
                and not args.distributed)
    if many:
        initialize(args.coordinator, args.num_processes, args.process_id, auto=args.distributed,
                   timeout=args.init_timeout, heartbeat_timeout=args.heartbeat_timeout)
    console.start_backends()
    return many


def _parse_address(address):
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise DistributedError(f"--coordinator {address!r}: expected HOST:PORT, e.g. 10.0.0.2:8476 "
                               "(process 0's address, reachable from every process)")
    return host.strip("[]"), int(port)


def _wait_for_port(host, port, deadline):
    """Until the coordinator accepts TCP connections or the deadline passes."""
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return True
        except OSError:
            if time.time() >= deadline:
                return False
            time.sleep(0.25)


def _check_port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As gRPC does: a port in TIME_WAIT after a killed run is free, a listening one is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError as e:
            raise DistributedError(f"process 0 cannot host the coordinator on port {port}: {e.strerror}. Another "
                                   "run (or a process of a killed one) still holds it: stop it, or choose another "
                                   "port in --coordinator.") from None


def _explicit_args(coordinator, num_processes, process_id):
    missing = [name for name, v in (("--coordinator", coordinator), ("--num-processes", num_processes),
                                    ("--process-id", process_id)) if v is None]
    if missing:
        raise DistributedError(f"{' and '.join(missing)} missing: an explicit multi-host start needs all of "
                               "--coordinator HOST:PORT --num-processes N --process-id I (or --distributed to let "
                               "JAX detect a TPU pod slice, SLURM or Open MPI).")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise DistributedError(f"--process-id {process_id} with --num-processes {num_processes}: the id must be in "
                               f"0..{num_processes - 1}, and each process needs its own.")


def initialize(coordinator=None, num_processes=None, process_id=None, auto=False, timeout=300,
               heartbeat_timeout=100):
    """Join the run (jax.distributed.initialize) or fail with a clear error within `timeout` s.
    A process whose peer stops answering for `heartbeat_timeout` s ends (JAX's coordination
    service), so a job whose host died does not hold the others.

    Must come before any other JAX call of the process."""
    if jax.distributed.is_initialized():
        return
    if not auto:
        _explicit_args(coordinator, num_processes, process_id)
        host, port = _parse_address(coordinator)
        deadline = time.time() + timeout
        if process_id == 0:
            _check_port_free(port)
        elif not _wait_for_port(host, port, deadline):
            raise DistributedError(
                f"process {process_id} of {num_processes} could not reach the coordinator {coordinator} within "
                f"{timeout} s. Start process 0 (it hosts the coordinator), check that HOST:PORT is process 0's "
                "address as seen from this host and that the port is open, or raise --init-timeout.")
    where = coordinator or "the address the cluster gives"
    # The watchdog speaks first: JAX's own timeout ends the process with an abort and a C++ stack.
    watchdog = threading.Timer(timeout, _give_up, args=(process_id, num_processes, where, timeout))
    watchdog.daemon = True
    watchdog.start()
    logging.info("joining the run at %s (process %s of %s, waiting up to %d s for all to join)", where,
                 process_id, num_processes, timeout)
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, initialization_timeout=timeout + 30,
                                   heartbeat_timeout_seconds=heartbeat_timeout)
    except ValueError as e:
        if auto:
            raise DistributedError(f"--distributed: JAX found no cluster to join ({e}). Outside Cloud TPU, SLURM, "
                                   "Open MPI or GKE, give --coordinator, --num-processes and --process-id.") from None
        raise DistributedError(str(e)) from None
    finally:
        watchdog.cancel()
    logging.info("process %d of %d joined; %d local of %d devices", jax.process_index(), jax.process_count(),
                 jax.local_device_count(), jax.device_count())


def _give_up(process_id, num_processes, where, timeout):
    who = f"process {process_id} of {num_processes}" if process_id is not None else "this process"
    print(f"error: {who} waited {timeout} s at {where} and not every process joined. Start all "
          f"{num_processes or 'N'} processes with the same --coordinator and --num-processes and distinct "
          "--process-id values, or raise --init-timeout.", file=sys.stderr, flush=True)
    os._exit(2)


def _differences(mine, theirs, prefix=""):
    out = []
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key, "<missing>"), theirs.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {b!r} on process 0, {a!r} here")
    return out


def check_same_config(config, timeout=300):
    """Every process must train the same config: compare each with process 0's through the
    coordinator's key-value store; if any differs, all processes raise (none hangs)."""
    if jax.process_count() == 1:
        return
    client = jax_distributed.global_state.client
    mine = json.dumps(checkpoint.config_dict(config), sort_keys=True)
    if jax.process_index() == 0:
        client.key_value_set(_KEY + "0", mine)
        diffs = []
    else:
        reference = client.blocking_key_value_get(_KEY + "0", timeout * 1000)
        diffs = _differences(json.loads(mine), json.loads(reference)) if reference != mine else []
    client.key_value_set(_KEY + f"diff/{jax.process_index()}", "\n".join(diffs))
    flags = multihost_utils.process_allgather(np.int32(bool(diffs)))
    bad = [int(i) for i in np.flatnonzero(np.asarray(flags))]
    if not bad:
        return
    lines = []
    for i in bad[:4]:
        text = client.blocking_key_value_get(_KEY + f"diff/{i}", timeout * 1000)
        lines.append(f"process {i}: " + "; ".join(text.split("\n")[:6]).replace(" here", f" on process {i}"))
    raise DistributedError(
        f"the processes run different configs ({len(bad)} of {jax.process_count()} differ from process 0): "
        + " | ".join(lines) + ". Start every process with the same --config file and --config.* overrides.")


def wait_for_all(name: str, timeout: int = 1800):
    """Block until every process reaches `name` (the coordinator's barrier, not a collective).
    Before the first step: CPU collectives (gloo) give a peer 30 s to join a new device group,
    and one host can still be compiling a large step long after another has finished."""
    if jax.process_count() == 1:
        return
    jax_distributed.global_state.client.wait_at_barrier(f"pix2pixhd_jax/{name}", timeout * 1000)


def broadcast_from_main(value: int) -> int:
    """Process 0's integer on every process (e.g. the step to resume from, read from a shared disk
    that another process may see a moment later or earlier)."""
    if jax.process_count() == 1:
        return value
    return int(multihost_utils.broadcast_one_to_all(np.int64(value)))


def gather_to_host(tree):
    """A tree of global arrays (replicated or sharded over processes) as numpy on every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    def one(x):
        if getattr(x, "is_fully_replicated", False) or getattr(x, "is_fully_addressable", True):
            return np.asarray(jax.device_get(x))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree_util.tree_map(one, tree)


def concat_over_processes(rows: np.ndarray) -> np.ndarray:
    """Every process's rows, concatenated in process order (counts may differ per process).
    Sent as float32/int32 (JAX's default precision): exact for counts below 2**31."""
    rows = np.asarray(rows)
    if jax.process_count() == 1:
        return rows
    counts = np.ravel(multihost_utils.process_allgather(np.asarray([len(rows)], np.int32)))
    top = int(counts.max())
    padded = np.concatenate([rows, np.zeros((top - len(rows),) + rows.shape[1:], rows.dtype)])
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return np.concatenate([gathered[i, :int(c)] for i, c in enumerate(counts)]).astype(rows.dtype)


def sum_over_processes(counts: np.ndarray) -> np.ndarray:
    """The elementwise sum of an integer array over processes, exact up to 2**60 (sent as two
    30-bit halves, since JAX gathers int32)."""
    counts = np.asarray(counts, np.int64)
    if jax.process_count() == 1:
        return counts
    halves = np.stack([counts >> 30, counts & (2 ** 30 - 1)]).astype(np.int32)
    gathered = np.asarray(multihost_utils.process_allgather(halves)).astype(np.int64).sum(0)
    return (gathered[0] << 30) + gathered[1]

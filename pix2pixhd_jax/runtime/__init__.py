"""runtime/: running jitted programs over devices, hosts and time.

Lives here: the device mesh and the shardings of batches and train states (`sharding`),
multi-host start-up and the collectives between processes (`distributed`), the parts every
trainer's loop shares (`loop`: restore or init, sharded jit, batches on the devices ahead,
metrics read one step late, periodic and SIGTERM saves, the non-finite stop, progress), the
step a run resumes from (`resume`), TensorBoard and metrics.jsonl (`metric_writer`), host
memory on the CPU backend (`host_memory`), what reaches the console (`console`).

Which parts it may import: docs/architecture.md ("Who may import whom"), the one statement of
the rules (tests/test_architecture.py holds the code to them).
"""

"""runtime/: running jitted programs over devices, hosts and time.

Lives here: the device mesh and the shardings of batches and train states (`sharding`),
multi-host start-up and the collectives between processes (`distributed`), the training-loop
skeleton every trainer runs (`loop`: restore or init, sharded jit, metrics read one step
late, periodic and SIGTERM saves, the non-finite stop, progress), TensorBoard and
metrics.jsonl (`metric_writer`), and host memory on the CPU backend (`host_memory`).

May import: `checkpoint`, `atomic`, `errors`. Nothing here knows a model.
"""

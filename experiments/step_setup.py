"""What the train-step experiments share: their command line and the step's inputs.

step_flops.py, step_ab.py and profile_step.py all take --config CONFIG [--config.X=V ...]
--height --width --batch and build the benchmark's numpy-filled state and random batch.
"""

import argparse
import sys

from pix2pixhd_jax.config_loading import load_config, split_config_args
from pix2pixhd_jax.training import benchmark


def parse(description, argv=None, height=128, width=128, batch=2, add_arguments=None):
    """(args, config overrides, config) from the command line; add_arguments(parser) adds a script's own."""
    overrides, rest = split_config_args(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True)
    parser.add_argument("--height", type=int, default=height)
    parser.add_argument("--width", type=int, default=width)
    parser.add_argument("--batch", type=int, default=batch)
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(rest)
    return args, overrides, load_config(args.config, overrides)


def step_inputs(config, args):
    """(networks, train state, batch) at the command line's size, as the benchmark builds them."""
    program, _ = benchmark.train_program(config, args.height, args.width)
    return (program.nets, benchmark.filled_state(program),
            benchmark.random_batch(config, args.batch, args.height, args.width))

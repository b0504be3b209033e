"""The image pool of Shrivastava et al. (the reference's util/image_pool.py), functional.

D sees, for each generated image, with probability 1/2 an older generated image from
the pool (which the new one then replaces), once the pool is full; until then the new
image, which is stored. The pool is arrays in the train state, so it is checkpointed,
sharded and jitted with it.
"""

import jax
import jax.numpy as jnp


def init_pool(pool_size: int, example_shape, dtype=jnp.float32):
    return {"images": jnp.zeros((pool_size,) + tuple(example_shape), dtype), "count": jnp.zeros((), jnp.int32)}


def query(pool, images, rng):
    """(pool, images (B, ...)) -> (new pool, images for D)."""
    size = pool["images"].shape[0]
    out = []
    stored, count = pool["images"], pool["count"]
    for i, key in enumerate(jax.random.split(rng, images.shape[0])):
        image = images[i]
        k_swap, k_index = jax.random.split(key)
        not_full = count < size
        swap = jax.random.uniform(k_swap) > 0.5
        index = jax.random.randint(k_index, (), 0, size)
        old = stored[index]
        # Not full: store at `count`, return the new image. Full: swap with prob 1/2.
        slot = jnp.where(not_full, jnp.minimum(count, size - 1), index)
        write = not_full | swap
        stored = stored.at[slot].set(jnp.where(write, image, stored[slot]))
        out.append(jnp.where(~not_full & swap, old, image))
        count = jnp.minimum(count + 1, size)
    return {"images": stored, "count": count}, jnp.stack(out)

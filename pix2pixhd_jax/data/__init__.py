"""Data: synthetic scenes, readers for every layout, transforms and the tf.data pipeline.

Only `pipeline` and `tfds_builders` import TensorFlow.
"""

"""The demo model with the instance-level feature encoder (paper sec. 3.4): diverse
outputs and per-object styles on the synthetic scenes, whose true styles are known.

    pix2pixhd-jax make-synthetic --out demo/synthetic --num-train 200 --num-test 20 --size 256x128
    pix2pixhd-jax train --config configs/synthetic_features.py --workdir runs/features
    pix2pixhd-jax encode-features --workdir runs/features
    pix2pixhd-jax synthesize --workdir runs/features --label demo/synthetic/test_label \\
        --inst demo/synthetic/test_inst --out runs/features/random --num-samples 3
"""

from configs import synthetic_demo


def get_config():
    config = synthetic_demo.get_config()
    config.name = "synthetic_features"
    config.model.instance_feat = True
    # E learns only through G's loss; after the demo's 600 steps its features still mix some
    # car colours (k-means purity 0.65 on car), so this trains 2.5 times as long (~40 min on 2 cores).
    config.train.niter = 20
    config.train.niter_decay = 10
    config.train.save_latest_freq = 250
    return config

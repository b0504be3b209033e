"""evaluation/: the paper's scores for trained models.

Lives here: confusion matrices, Frechet distances, KID, PSNR/SSIM and diversity (`metrics`),
the evaluation segmenter's training (its loop, with the runtime's shared parts) and its
inference (`segmenter`), and the evaluate command (`evaluate`).

Which parts it may import: docs/architecture.md ("Who may import whom"), the one statement of
the rules (tests/test_architecture.py holds the code to them).
"""

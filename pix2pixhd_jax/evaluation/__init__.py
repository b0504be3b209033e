"""evaluation/: the paper's scores for trained models.

Lives here: confusion matrices, Frechet distances, KID, PSNR/SSIM and diversity (`metrics`),
the evaluation segmenter's training on the runtime's loop skeleton and its inference
(`segmenter`), and the evaluate command (`evaluate`).

May import: `models`, `data`, `weights`, `inference`, `runtime` and the shared basics;
never `training`.
"""

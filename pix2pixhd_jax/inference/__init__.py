"""inference/: trained models applied: synthesis, styles, editing, export.

Lives here: `Synthesizer` (label maps -> photos, with styles; `synthesis`), per-instance
features and their k-means styles (`features`) and the encode-features job (`encode`),
object-level scene editing (`editing`), the synthesize command's file handling (`files`).

May import: `models`, `data`, `weights`, `runtime` and the shared basics; never `training`.
"""

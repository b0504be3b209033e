"""inference/: trained models applied: synthesis, styles, editing, export.

Lives here: `Synthesizer` (label maps -> photos, with styles; `synthesis`), per-instance
features and their k-means styles (`features`) and the encode-features job (`encode`),
object-level scene editing (`editing`), the synthesize command's file handling (`files`), the
generator exported as a program (`export`).

Which parts it may import: docs/architecture.md ("Who may import whom"), the one statement of
the rules (tests/test_architecture.py holds the code to them).
"""

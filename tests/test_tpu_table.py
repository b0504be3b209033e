"""experiments/tpu_table.py's largest-batch table: what it says of the batches between the largest
that compiled and the smallest that did not fit."""

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "experiments"))
import tpu_table  # noqa: E402


def fits(gib):
    return {"compiles": True, "per_chip_gib": gib, "chip_hbm_gib": 32.0,
            "roofline": {"images_per_s_per_chip_bound": 10.0 * gib}}


def too_big(temporaries):
    return {"compiles": False, "error": f"RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required "
                                        f"for HLO temporaries ({temporaries}G) exceeds available HBM (30.75G)."}


def row(entries, capsys):
    tpu_table.report_largest({f"v4:2x2x1/global_1024x512/train_step/none/replicated/b{b}": rec
                              for b, rec in entries.items()})
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| v4:2x2x1")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_gap_below_the_batch_that_did_not_fit_is_named(capsys):
    cells = row({1: fits(4.9), 10: fits(29.84), 20: too_big("33.96")}, capsys)
    assert cells[3] == "10 or more" and cells[4] == "29.84 GiB of 32"
    assert cells[6] == "11-19 not compiled yet; 20 does not fit: 33.96G of temporaries against 30.75G of HBM"


def test_the_next_batch_not_fitting_bounds_the_largest(capsys):
    cells = row({1: fits(4.9), 10: fits(29.84), 11: too_big("31.2"), 20: too_big("33.96")}, capsys)
    assert cells[3] == "10" and cells[6] == "does not fit: 31.2G of temporaries against 30.75G of HBM"


def test_nothing_above_the_largest_compiled_yet(capsys):
    cells = row({1: fits(4.9)}, capsys)
    assert cells[3] == "1 or more" and cells[6] == "not compiled yet"


def test_a_batch_that_compiles_over_the_chips_hbm_does_not_count_as_fitting(capsys):
    over = dict(fits(33.5), fits_hbm=False)  # XLA:TPU compiled it; its memory analysis exceeds the chip
    cells = row({1: fits(4.9), 10: fits(29.84), 11: over}, capsys)
    assert cells[3] == "10" and cells[4] == "29.84 GiB of 32"
    assert cells[6] == ("does not fit: XLA:TPU compiles it, but its memory analysis sums to 33.50 GiB per chip, "
                        "over the chip's 32")

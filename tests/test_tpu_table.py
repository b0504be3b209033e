"""experiments/tpu_table.py: the largest-batch search (what it compiles) and table (what it says of
the batches between the largest that compiled and the smallest that did not fit)."""

import json
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


def entry(topo, batch, gib, kind):
    """A compiled batch that fits, as Table keeps it: (its name, its record)."""
    name = f"{topo}/global_1024x512/train_step/none/replicated/b{batch}"
    return name, {"compiles": True, "per_chip_bytes": int(gib * tpu_table.GIB), "argument_bytes": 2 * tpu_table.GIB,
                  "per_chip_gib": gib, "device_kind": kind, "fits_hbm": True, "compile_s": 1.0}


def row(entries, capsys):
    tpu_table.report_largest({f"v4:2x2x1/global_1024x512/train_step/none/replicated/b{b}": rec
                              for b, rec in entries.items()})
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| v4:2x2x1")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_gap_below_the_batch_that_did_not_fit_is_named(capsys):
    cells = row({1: fits(4.9), 10: fits(29.84), 20: too_big("33.96")}, capsys)
    assert cells[3] == "10 or more" and cells[4] == "29.84 GiB of 32"
    assert cells[6] == "11-19 not compiled yet; 20 does not fit: 33.96G of temporaries against 30.75G of HBM"


def test_a_gap_of_one_batch_is_named_as_that_batch(capsys):
    cells = row({1: fits(4.9), 15: fits(30.08), 17: too_big("34.01")}, capsys)
    assert cells[3] == "15 or more"
    assert cells[6] == "16 not compiled yet; 17 does not fit: 34.01G of temporaries against 30.75G of HBM"


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


# What a search starts from: v5e's batches 1 and 2 (what a second image costs) and v4's batch 1.
STARTING = dict([entry("v5e:2x2", 1, 4.72, "TPU v5 lite"), entry("v5e:2x2", 2, 7.72, "TPU v5 lite"),
                 entry("v4:2x2x1", 1, 4.9, "TPU v4")])


def v4_search(tmp_path, monkeypatch, known, fits_up_to):
    """A v4 search from the `known` entries with XLA:TPU stood in for by a chip that takes
    `fits_up_to` images: (a function running Table.largest_batch afresh, the batches compiled)."""
    path = tmp_path / "compiles.json"
    path.write_text(json.dumps(known))
    compiled = []

    def compile_for_topology(config, topo, height, width, batch, what):
        compiled.append(batch)
        if batch <= fits_up_to:
            return dict(entry(topo, batch, 30.5, "TPU v4")[1])
        return too_big("31.5") | {"compile_s": 1.0}

    monkeypatch.setattr(tpu_table.aot, "compile_for_topology", compile_for_topology)
    return lambda: tpu_table.Table(str(path)).largest_batch("v4:2x2x1", "global_1024x512"), compiled


def test_a_resumed_search_compiles_only_inside_the_gap_still_open(tmp_path, monkeypatch):
    """Batches already compiled bound the search from both sides: with 16 known to fit and 20 known
    not to, only 17-19 are compiled, whatever the first guess's path would have tried, from the top
    down (those over the chip fail fast), so the one that fits is the last compiled."""
    known = STARTING | dict([entry("v4:2x2x1", 10, 29.0, "TPU v4"), entry("v4:2x2x1", 16, 30.0, "TPU v4")])
    known["v4:2x2x1/global_1024x512/train_step/none/replicated/b20"] = too_big("33.96") | {"device_kind": "TPU v4"}
    search, compiled = v4_search(tmp_path, monkeypatch, known, fits_up_to=17)
    assert search() == 17
    assert compiled == [19, 18, 17]
    assert search() == 17 and compiled == [19, 18, 17]


def test_a_wide_gap_is_halved_and_a_narrow_one_walked_down_from_its_top(tmp_path, monkeypatch):
    """From batch 1 alone: doubling from the first guess until a batch does not fit, halving the gap
    while it is wider than NARROW_GAP, then from the top down, so the narrow gap costs one compile
    that fits (the answer) however many fail above it."""
    search, compiled = v4_search(tmp_path, monkeypatch, STARTING, fits_up_to=13)
    assert search() == 13
    # The guess: 1 + (32 - 4.9 GiB) // 3.0 GiB (what a second image cost on v5e) = 10; 20 does not fit;
    # the gaps (10, 20) and (10, 15) are halved; (12, 15) is walked down: 14 does not fit, 13 does.
    assert compiled == [10, 20, 15, 12, 14, 13]


def test_batch_compiles_that_batch_alone(tmp_path, monkeypatch, capsys):
    """--batch N: one entry per topology and config asked for, no search, no remat policies."""
    compiled = []

    def compile_for_topology(config, topo, height, width, batch, what):
        compiled.append((topo, config.train.remat, batch, what))
        return too_big("40.0") | {"compile_s": 1.0}

    monkeypatch.setattr(tpu_table.aot, "compile_for_topology", compile_for_topology)
    out = tmp_path / "compiles.json"
    monkeypatch.setattr(sys, "argv", ["tpu_table.py", "--out", str(out), "--only", "v5", "--configs", "global_1024x512",
                                      "--what", "train_step", "--batch", "3"])
    tpu_table.main()
    assert compiled == [("v5e:2x2", "none", 3, "train_step"), ("v5p:2x2x1", "none", 3, "train_step")]
    assert set(json.loads(out.read_text())) == {
        "v5e:2x2/global_1024x512/train_step/none/replicated/b3", "v5p:2x2x1/global_1024x512/train_step/none/replicated/b3"}


def test_each_recipe_compiles_as_it_ships_and_remat_policies_only_where_the_networks_have_them(tmp_path, monkeypatch):
    """pix2pixHD's recipes with the VGG term on and the remat policies compared on v5e; OASIS's
    without a VGG term (it has none) and its own setting alone (SPADE's G has no remat policy)."""
    compiled = []

    def compile_for_topology(config, topo, height, width, batch, what):
        compiled.append((config.model.netG, config.loss.no_vgg_loss, config.train.remat, (height, width), batch))
        return too_big("40.0") | {"compile_s": 1.0}

    monkeypatch.setattr(tpu_table.aot, "compile_for_topology", compile_for_topology)
    monkeypatch.setattr(sys, "argv", ["tpu_table.py", "--out", str(tmp_path / "compiles.json"), "--only", "v5e",
                                      "--configs", "global_1024x512,oasis_512x256", "--what", "train_step"])
    tpu_table.main()
    oasis = [c for c in compiled if c[0] == "spade"]
    assert oasis == [("spade", True, "none", (256, 512), 1)]  # batch 1 does not fit here: no search above it
    pix2pixhd = [c for c in compiled if c[0] == "global"]
    assert {c[1] for c in pix2pixhd} == {False}
    assert {c[2] for c in pix2pixhd} == set(tpu_table.POLICIES)

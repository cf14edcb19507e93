"""The rate-distortion report (stereocodec.eval.report, `stereo-codec report`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from conftest import need_shared, run_cli
from stereocodec.cli.batch_commands import bd_table, rd_table
from stereocodec.eval import baselines
from stereocodec.eval.report import (
    CurvePoint, RDPoint, TargetRow, bd_rates, default_anchor, interpolate, parse_qualities, plan_report, run_report, target_gaps,
    versus,
)  # fmt: skip
from stereocodec.io.images import InputError
from stereocodec.rate_control import Target
from test_batch import ONE_THREAD, one_thread, tree, weights_file  # noqa: F401 (fixtures)


def test_report_cli_on_crops_of_the_shared_pairs(tmp_path: Path, weights_file: Path) -> None:
    stereo = need_shared("data", "stereo")
    files = {name: tmp_path / f"rd.{name}" for name in ("json", "csv", "png")}
    proc = run_cli(
        "report", stereo, "--codecs", "sbic,jpeg,webp", "--anchor", "jpeg", "--weights", weights_file,
        "--max-side", "64", "--qualities", "jpeg=10,30,60,90", "--qualities", "webp=15,50,90",
        "--json", files["json"], "--csv", files["csv"], "--plot", files["png"],
        env=ONE_THREAD, check=True,
    )  # fmt: skip
    assert "BD-rate against jpeg" in proc.stdout and "webp" in proc.stdout
    data = json.loads(files["json"].read_text())
    assert data["anchor"] == "jpeg" and sorted(data["pairs"]) == ["aloe", "foundation", "mb_playtable"]
    settings = {"sbic": 6, "jpeg": 4, "webp": 3}
    assert len(data["points"]) == 3 * sum(settings.values())  # every RD point is there
    for p in data["points"]:
        assert max(p["width"], p["height"]) <= 64
        assert p["bpp"] == pytest.approx(8 * p["bytes"] / (2 * p["width"] * p["height"]))
        assert p["psnr"] == pytest.approx((p["psnr_left"] + p["psnr_right"]) / 2)
        assert p["psnr_gap"] == pytest.approx(p["psnr_left"] - p["psnr_right"])
    assert {name: len(c) for name, c in data["curves"].items()} == settings
    assert data["bd_rate"]["jpeg"] == {"psnr": pytest.approx(0, abs=1e-9), "ms_ssim": pytest.approx(0, abs=1e-9)}
    assert data["bd_rate"]["webp"]["psnr"] is not None
    assert "BD-rate of sbic against each codec" in proc.stdout and sorted(data["sbic_versus"]) == ["jpeg", "webp"]
    assert len(list(csv.DictReader(io.StringIO(files["csv"].read_text())))) == len(data["points"])
    with Image.open(files["png"]) as img:
        assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 200


def _curve() -> list[CurvePoint]:
    """A plausible four-point RD curve."""
    return [CurvePoint(q, 3, bpp, psnr, ssim, 0.0, 0.1, 0.1) for q, bpp, psnr, ssim in
            [(0, 0.2, 29.0, 0.90), (1, 0.4, 32.0, 0.94), (2, 0.8, 35.5, 0.97), (3, 1.6, 39.0, 0.985)]]  # fmt: skip


def test_bd_rate_of_a_curve_against_itself_and_its_scaled_rates() -> None:
    base = _curve()
    cheaper = [CurvePoint(p.quality, p.pairs, 0.8 * p.bpp, p.psnr, p.ms_ssim, 0.0, 0.1, 0.1) for p in base]
    bd, notes = bd_rates({"anchor": base, "same": list(base), "cheaper": cheaper}, "anchor")
    assert notes == []
    for name, expected in (("anchor", 0.0), ("same", 0.0), ("cheaper", -20.0)):
        assert bd[name].psnr == pytest.approx(expected, abs=1e-9)
        assert bd[name].ms_ssim == pytest.approx(expected, abs=1e-9)
    apart = [CurvePoint(p.quality, p.pairs, p.bpp, p.psnr + 30, p.ms_ssim, 0.0, 0.1, 0.1) for p in base]
    bd, notes = bd_rates({"anchor": base, "apart": apart}, "anchor")
    assert bd["apart"].psnr is None and bd["apart"].ms_ssim == pytest.approx(0, abs=1e-9)
    assert len(notes) == 1 and "apart" in notes[0]


def test_sbic_against_each_codec() -> None:
    """Each comparison anchors on the other codec; BD-rate is not antisymmetric, so not a negation."""
    base = _curve()
    sbic = [CurvePoint(p.quality, p.pairs, 0.8 * p.bpp, p.psnr, p.ms_ssim, 0.0, 0.1, 0.1) for p in base]
    apart = [CurvePoint(p.quality, p.pairs, p.bpp, p.psnr + 30, p.ms_ssim, 0.0, 0.1, 0.1) for p in base]
    against, notes = versus({"sbic": sbic, "jpeg": base, "apart": apart})
    assert list(against) == ["jpeg", "apart"]
    assert against["jpeg"].psnr == pytest.approx(-20.0) and against["jpeg"].ms_ssim == pytest.approx(-20.0)
    assert bd_rates({"sbic": sbic, "jpeg": base}, "sbic")[0]["jpeg"].psnr == pytest.approx(25.0)
    assert against["apart"].psnr is None and len(notes) == 1 and "against apart" in notes[0]
    assert versus({"jpeg": base}) == ({}, [])


def test_mean_curves_unreadable_pairs_and_tables(tmp_path: Path) -> None:
    root = tree(tmp_path / "in", ["a", "b", "c"], broken="c")
    plan = plan_report(root, ["jpeg"], anchor="jpeg", qualities={"jpeg": [20, 80]}, max_side=40)
    assert plan.steps == 3 * 2
    steps = []
    report = run_report(plan, lambda n, label: steps.append(n))
    assert sum(steps) == plan.steps
    assert report.pairs == ["a", "b"] and any(n.startswith("pair c left out") for n in report.notes)
    for curve in report.curves["jpeg"]:
        group = [p for p in report.points if p.quality == curve.quality]
        assert len(group) == curve.pairs == 2
        assert curve.bpp == pytest.approx(np.mean([p.bpp for p in group]))
        assert curve.psnr == pytest.approx(np.mean([p.psnr for p in group]))
    assert all((p.width, p.height) == (40, 40) for p in report.points)
    console = Console(file=io.StringIO(), width=120)
    console.print(rd_table(report), bd_table(report))
    assert "jpeg (anchor)" in console.file.getvalue()


def test_unavailable_codecs_are_skipped_and_the_anchor_falls_back(tmp_path: Path, monkeypatch) -> None:
    root = tree(tmp_path / "in", ["a"])
    monkeypatch.setattr(baselines.CODECS["hevc"], "available", lambda: "ffmpeg not found on PATH")
    plan = plan_report(root, ["webp", "hevc"], anchor="hevc")
    assert plan.anchor == "jpeg" and list(plan.codecs) == ["webp", "jpeg"]
    assert any("hevc skipped: ffmpeg" in n for n in plan.notes) and any("against jpeg" in n for n in plan.notes)


def test_report_user_errors(tmp_path: Path) -> None:
    root = tree(tmp_path / "in", ["a"])
    assert parse_qualities(["jpeg=10,90", "sbic=0"]) == {"jpeg": [10, 90], "sbic": [0]}
    for bad in ("jpeg", "png=1", "jpeg=1,x"):
        with pytest.raises(InputError, match="--qualities"):
            parse_qualities([bad])
    with pytest.raises(InputError, match="unknown codec"):
        plan_report(root, ["jpeg", "bpg"], anchor="jpeg")
    with pytest.raises(InputError, match="not among"):
        plan_report(root, ["jpeg"], anchor="jpeg", qualities={"webp": [50]})
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no stereo pairs"):
        plan_report(tmp_path / "empty", ["jpeg"], anchor="jpeg")


def test_the_default_anchor_is_one_of_the_codecs_asked_for(tmp_path: Path) -> None:
    """`--codecs sbic,jpeg,webp` codes no HEVC: the anchor is jpeg; only an explicit --anchor adds a codec, with a note."""
    root = tree(tmp_path / "in", ["a"])
    assert default_anchor(["sbic", "jpeg", "webp"]) == "jpeg" and default_anchor(["sbic", "webp", "hevc"]) == "hevc"
    assert default_anchor(["sbic"]) == "sbic"
    plan = plan_report(root, ["jpeg", "webp"])
    assert plan.anchor == "jpeg" and list(plan.codecs) == ["jpeg", "webp"] and plan.notes == []
    plan = plan_report(root, ["webp"], anchor="jpeg")
    assert list(plan.codecs) == ["webp", "jpeg"] and any("jpeg is coded too" in n for n in plan.notes)


def _points(codec: str, rows: list[tuple[int, float, float]]) -> list[RDPoint]:
    """RD points of one pair: (setting, bpp, PSNR), MS-SSIM rising with the PSNR."""
    return [RDPoint("a", codec, q, 8, 8, 0, bpp, psnr, psnr, psnr, 0.0, psnr / 50, psnr / 50, psnr / 50, 0.1, 0.1)
            for q, bpp, psnr in rows]  # fmt: skip


def test_interpolation_at_a_bpp_or_a_psnr_never_extrapolates() -> None:
    pts = _points("jpeg", [(50, 1.0, 34.0), (10, 0.25, 28.0), (30, 0.5, 31.0)])  # in any order
    mid = interpolate(pts, "bpp", (0.25 * 0.5) ** 0.5)  # halfway between 0.25 and 0.5 in log bpp
    assert mid.between == (10, 30) and mid.bpp == pytest.approx((0.25 * 0.5) ** 0.5) and mid.psnr == pytest.approx(29.5)
    assert mid.ms_ssim == pytest.approx(29.5 / 50)
    hit = interpolate(pts, "bpp", 1.0)
    assert hit.between == (50, 50) and hit.psnr == 34.0
    at = interpolate(pts, "psnr", 32.5)  # the bits jpeg needs for 32.5 dB: halfway from 0.5 to 1 bpp in log bpp
    assert at.between == (30, 50) and at.bpp == pytest.approx(0.5 ** 0.5) and at.psnr == pytest.approx(32.5)
    for along, value in (("bpp", 0.2), ("bpp", 1.5), ("psnr", 27.0), ("psnr", 35.0)):
        assert interpolate(pts, along, value) is None, (along, value)
    # a PSNR reached twice (a dip in the curve): the fewest bits that reach it
    dip = _points("webp", [(1, 0.2, 28.0), (2, 0.4, 32.0), (3, 0.8, 31.0), (4, 1.6, 36.0)])
    assert interpolate(dip, "psnr", 31.5).between == (1, 2)


def test_target_gaps_average_only_pairs_with_both_values() -> None:
    sbic = _points("sbic", [(0, 0.5, 31.0)])[0]
    at = interpolate(_points("jpeg", [(10, 0.25, 28.0), (30, 1.0, 32.0)]), "bpp", 0.5)
    rows = [TargetRow("a", sbic, 6, "", {"jpeg": at}), TargetRow("b", sbic, 6, "", {"jpeg": None}), TargetRow("c", None, 0, "out of reach", {})]
    gap = target_gaps(rows, Target("bpp", 0.5))["jpeg"]
    assert gap.pairs == 1 and gap.psnr_db == pytest.approx(31.0 - 30.0) and gap.bpp_percent is None
    at = interpolate(_points("jpeg", [(10, 0.25, 28.0), (30, 1.0, 32.0)]), "psnr", 31.0)
    gap = target_gaps([TargetRow("a", sbic, 6, "", {"jpeg": at})], Target("psnr", 31.0))["jpeg"]
    assert gap.psnr_db is None and gap.bpp_percent == pytest.approx(100 * (0.5 / at.bpp - 1)) and gap.bpp_percent < 0


def test_target_user_errors(tmp_path: Path) -> None:
    root = tree(tmp_path / "in", ["a"])
    with pytest.raises(InputError, match="add sbic to --codecs"):
        plan_report(root, ["jpeg"], target=Target("bpp", 0.5))
    with pytest.raises(InputError, match="either --qualities sbic"):
        plan_report(root, ["sbic", "jpeg"], qualities={"sbic": [1]}, target=Target("psnr", 30))

"""Batch compression and decompression of folder trees (stereocodec.batch, `stereo-codec batch`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_clean_error, run_cli
from helpers import join_sbs, write_mpo
from stereocodec.batch import CodecSpec, Listing, Source, Survey, find_sources, parse_shard, plan_batch, plan_decode, run_batch, shard_of
from stereocodec.codec import Codec
from stereocodec.container import Container
from stereocodec.io.images import InputError
from stereocodec.weights import load_weights, save_weights
from test_codec import tiny_weights
from test_stereo_formats import smooth_view

# One thread per process: on a busy machine two OpenMP threads per process can be 50x slower.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
H, W = 64, 96


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    """Tiny seeded variable-rate weights saved as a real weights file."""
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(tiny_weights("bisic-fast").model, path, {"name": "tiny test weights"})
    return path


def write_pair(folder: Path, seed: int, broken_right: bool = False, size: tuple[int, int] = (H, W)) -> None:
    """left.png / right.png of `size` (h, w), the right view a shifted copy of the left (real stereo-like)."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    wide = smooth_view(seed, h, w + 4)
    Image.fromarray(wide[:, 4:]).save(folder / "left.png")
    if broken_right:
        (folder / "right.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    else:
        Image.fromarray(wide[:, :w]).save(folder / "right.png")


def tree(root: Path, names: list[str], broken: str | None = None) -> Path:
    for i, name in enumerate(names):
        write_pair(root / name, i, broken_right=name == broken)
    return root


def summary(stdout: str) -> dict[str, str]:
    """The summary table's rows, label -> value."""
    rows = re.findall(r"^\W*([a-zA-Z][\w ()./]*?)\s*[│|]\s*(\S+)\s*[│|]\s*$", stdout, re.M)
    return dict(rows)


def statuses(jobs, spec: CodecSpec, **options) -> dict[str, str]:
    """Each pair's status in one `run_batch`, from its outcomes as they come (the result keeps totals only)."""
    seen: dict[str, str] = {}
    result = run_batch(jobs, spec, progress_callback=lambda o: seen.__setitem__(o.name, o.status), **options)
    assert result.pairs == len(seen) and result.count("failed") == len(result.failures)
    return seen


def outputs(root: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (inode, mtime) of every file, to tell rewritten files from kept ones."""
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def test_batch_cli_broken_pair_fails_alone_and_rerun_skips_the_done(tmp_path: Path, weights_file: Path) -> None:
    src = tree(tmp_path / "in", ["scenes/a", "scenes/b", "c"], broken="scenes/b")
    out = tmp_path / "out"
    args = ("batch", src, "-o", out, "--weights", weights_file, "--verify")
    first = run_cli(*args, env=ONE_THREAD)
    assert first.returncode == 1, first.stderr
    table = summary(first.stdout)
    assert (table["pairs"], table["done"], table["failed"]) == ("3", "2", "1"), first.stdout
    assert float(table["mean PSNR dB (this run)"]) > 0
    assert re.search(r"failed: scenes/b: .*right\.png", first.stdout), first.stdout
    assert sorted(outputs(out)) == ["c.sbic", "scenes/a.sbic"]  # the input tree, mirrored
    for name in ("c", "scenes/a"):
        container = Container.from_bytes((out / f"{name}.sbic").read_bytes())
        assert (container.views[0].height, container.views[0].width) == (H, W)
    before = outputs(out)

    second = run_cli(*args[:-1], env=ONE_THREAD)
    assert second.returncode == 1
    table = summary(second.stdout)
    assert (table["done"], table["skipped (valid output exists)"], table["failed"]) == ("0", "2", "1"), second.stdout
    assert outputs(out) == before


def test_invalid_outputs_are_redone_and_force_redoes_all(tmp_path: Path, weights_file: Path) -> None:
    src = tree(tmp_path / "in", ["a", "b"])
    out = tmp_path / "out"
    spec = CodecSpec(weights_file)
    done = run_batch(plan_batch(src, out), spec)
    assert (done.pairs, done.count("done")) == (2, 2) and done.ratio > 1
    good = (out / "a.sbic").read_bytes()
    (out / "a.sbic").write_bytes(good[: len(good) // 2])  # a partial file from some other tool
    assert statuses(plan_batch(src, out), spec) == {"a": "done", "b": "skipped"}
    assert (out / "a.sbic").read_bytes() == good  # deterministic encoder
    assert statuses(plan_batch(src, out), spec, force=True) == {"a": "done", "b": "done"}


def test_shards_cover_every_pair_exactly_once(tmp_path: Path, weights_file: Path) -> None:
    src = tree(tmp_path / "in", ["p0", "p1", "x/p2", "x/p3", "p4"])
    out = tmp_path / "out"
    one = run_cli("batch", src, "-o", out, "--weights", weights_file, "--shard", "1/2", "--workers", "2", env=ONE_THREAD, check=True)
    first = set(outputs(out))
    two = run_cli("batch", src, "-o", out, "--weights", weights_file, "--shard", "2/2", env=ONE_THREAD, check=True)
    second = set(outputs(out)) - first
    assert summary(one.stdout)["done"] == "3" and summary(two.stdout)["done"] == "2"
    assert first.isdisjoint(second)
    assert first | second == {"p0.sbic", "p1.sbic", "p4.sbic", "x/p2.sbic", "x/p3.sbic"}


def test_plan_shards_partition_by_a_hash_of_the_name_and_bad_shards_are_refused(tmp_path: Path) -> None:
    src = tree(tmp_path / "in", [f"s{i}" for i in range(7)])
    every = sorted(j.name for j in plan_batch(src, tmp_path / "out"))
    for n in (1, 2, 3, 8):
        shards = [[j.name for j in plan_batch(src, tmp_path / "out", (k, n))] for k in range(1, n + 1)]
        assert sorted(sum(shards, [])) == every
        assert all(len(plan_batch(src, tmp_path / "out", (k, n))) == len(names) for k, names in enumerate(shards, 1))
        assert all(shard_of(name, n) == k for k, names in enumerate(shards, 1) for name in names)
    assert [shard_of("s3", 4), shard_of("seq/0001", 4), shard_of("städte/ü", 3)] == [1, 2, 3]  # zlib.crc32: fixed forever
    before = {j.name for j in plan_batch(src, tmp_path / "out", (2, 3))}
    tree(src, ["0", "zz/new"])  # other pairs, before and after in the walk: no pair changes shard
    assert before == {j.name for j in plan_batch(src, tmp_path / "out", (2, 3))} - {"0", "zz/new"}
    for text in ("0/2", "3/2", "1/0", "1-2", "a/b"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(text)


def test_mpo_and_side_by_side_sources(tmp_path: Path) -> None:
    root = tmp_path / "in"
    write_pair(root / "pair", 0)
    left, right = smooth_view(1, 32, 40), smooth_view(2, 32, 40)
    (root / "trip").mkdir()
    write_mpo(root / "trip" / "cam.mpo", Image.fromarray(left), Image.fromarray(right))
    Image.fromarray(join_sbs(right, left)).save(root / "tv.png")  # cross-eyed: right view first
    assert [(s.name, s.layout) for s in find_sources(root)] == [("pair", "pair"), ("trip/cam", "mpo")]
    sources = find_sources(root, sbs="cross")
    assert [(s.name, s.layout) for s in sources] == [("pair", "pair"), ("trip/cam", "mpo"), ("tv", "sbs-cross")]
    (sl, sr), (ml, mr) = sources[2].read(), sources[1].read()
    assert np.array_equal(sl.pixels, left) and np.array_equal(sr.pixels, right)
    assert np.abs(ml.pixels.astype(int) - left).mean() < 3 and np.abs(mr.pixels.astype(int) - right).mean() < 3
    assert sorted(j.outputs[0].relative_to(tmp_path) for j in plan_batch(root, tmp_path / "o", sbs="cross")) == [
        Path("o/pair.sbic"), Path("o/trip/cam.sbic"), Path("o/tv.sbic")]  # fmt: skip
    Image.fromarray(join_sbs(left, right)).save(root / "trip" / "cam.png")  # would also be named trip/cam
    with pytest.raises(InputError, match="trip/cam"):
        find_sources(root, sbs="parallel")
    Image.new("RGB", (7, 4)).save(tmp_path / "odd.png")
    with pytest.raises(InputError, match="odd width"):
        Source("odd", "sbs", (tmp_path / "odd.png",)).read()


def test_two_inputs_of_one_name_are_refused_naming_both_files(tmp_path: Path) -> None:
    root = tmp_path / "in"
    write_pair(root / "a" / "b", 0)  # the pair a/b ...
    write_pair(root / "z", 1)
    left, right = smooth_view(1, 32, 40), smooth_view(2, 32, 40)
    write_mpo(root / "a" / "b.mpo", Image.fromarray(left), Image.fromarray(right))  # ... and a/b.mpo, walked first
    clash = f"{root / 'a' / 'b.mpo'} and {root / 'a' / 'b' / 'left.png'} both map to the name 'a/b'; rename one"
    with pytest.raises(InputError, match=re.escape(clash)):
        plan_batch(root, tmp_path / "out")  # before any work
    given = []
    with pytest.raises(InputError, match=re.escape(clash)):
        for source in Listing(root):  # the tree may change after planning: refused as it streams, before the second
            given.append(source.name)
    assert given == ["a/b"]
    with pytest.raises(InputError, match=re.escape(clash)):
        list(Listing(root, shard=(shard_of("z", 2), 2)))  # as before: every shard refuses the tree, not only a/b's
    proc = run_cli("batch", root, "-o", tmp_path / "out")
    assert_clean_error(proc)
    assert clash in proc.stderr.replace("\n", "") and not (tmp_path / "out").exists()
    (root / "a" / "b.mpo").unlink()
    write_mpo(root / "z" / "b.mpo", Image.fromarray(left), Image.fromarray(right))  # z/b: one name a folder, not a/b
    assert [s.name for s in find_sources(root)] == ["a/b", "z", "z/b"]


def test_a_cityscapes_pair_is_checked_against_the_folder_it_is_named_under(tmp_path: Path) -> None:
    """`leftImg8bit/v/s_leftImg8bit.png` is named v/s, under a folder far from it in the walk."""
    root = tmp_path / "in"
    for side in ("left", "right"):  # the listing reads no pixels: empty files
        for folder in (f"{side}Img8bit/v", f"w/{side}Img8bit"):  # v/s, and w/s
            (root / folder).mkdir(parents=True)
            (root / folder / f"s_{side}Img8bit.png").write_bytes(b"")
    assert [s.name for s in find_sources(root)] == ["v/s", "w/s"]
    write_pair(root / "v" / "s", 0)  # v/s/left.png + right.png: v/s too, walked after
    with pytest.raises(InputError, match=re.escape(f"{root / 'v/s/left.png'} and {root / 'leftImg8bit/v/s_leftImg8bit.png'} both map")):
        plan_batch(root, tmp_path / "out")
    shutil.rmtree(root / "v")
    for side in ("left", "right"):  # leftImg8bit/w/s_leftImg8bit.png: w/s, as w/leftImg8bit/s_leftImg8bit.png
        (root / f"{side}Img8bit" / "v").rename(root / f"{side}Img8bit" / "w")
    with pytest.raises(InputError, match=re.escape(f"{root / 'w/leftImg8bit/s_leftImg8bit.png'} and {root / 'leftImg8bit/w/s_leftImg8bit.png'} both map")):
        find_sources(root)


def test_unpaired_images_are_counted_not_held(tmp_path: Path) -> None:
    src = tree(tmp_path / "in", ["a"])
    for i in range(2 * Survey.EXAMPLES):
        Image.new("RGB", (40, 30)).save(src / f"lonely{i:02d}.png")
    plan = plan_batch(src, tmp_path / "o")
    assert len(plan) == 1 and f"{2 * Survey.EXAMPLES} image(s) under" in plan.note and "lonely00.png" in plan.note
    assert len(plan_batch(src, tmp_path / "o", sbs="parallel")) == 1 + 2 * Survey.EXAMPLES


def test_batch_decode_matches_the_decoder_and_resumes(tmp_path: Path, weights_file: Path) -> None:
    src = tree(tmp_path / "in", ["a", "deep/b"])
    coded, decoded = tmp_path / "sbic", tmp_path / "png"
    run_batch(plan_batch(src, coded), CodecSpec(weights_file), quality=1)
    assert statuses(plan_decode(coded, decoded), CodecSpec(weights_file)) == {"a": "done", "deep/b": "done"}
    assert sorted(outputs(decoded)) == ["a_left.png", "a_right.png", "deep/b_left.png", "deep/b_right.png"]
    codec = Codec(load_weights(weights_file))
    dec = codec.decode((coded / "deep" / "b.sbic").read_bytes())
    assert np.array_equal(np.asarray(Image.open(decoded / "deep" / "b_right.png")), dec.right)
    (coded / "junk.sbic").write_bytes(b"SBIC but not really")
    assert statuses(plan_decode(coded, decoded), CodecSpec(weights_file)) == {"a": "skipped", "deep/b": "skipped", "junk": "failed"}


def test_batch_cli_decode_and_user_errors(tmp_path: Path, weights_file: Path) -> None:
    src = tree(tmp_path / "in", ["a"])
    run_batch(plan_batch(src, tmp_path / "sbic"), CodecSpec(weights_file))
    proc = run_cli("batch", tmp_path / "sbic", "-o", tmp_path / "png", "--decode", "--weights", weights_file, env=ONE_THREAD, check=True)
    assert summary(proc.stdout)["done"] == "1" and (tmp_path / "png" / "a_left.png").is_file()
    assert_clean_error(run_cli("batch", src, "-o", tmp_path / "o", "--weights", tmp_path / "nope.safetensors"))


def test_batch_size_budget_codes_pairs_of_every_size(tmp_path: Path, weights_file: Path) -> None:
    """One --size over pairs of two sizes: the large pair is coded to meet it, the small one is under it even
    at the highest quality and gets that quality (a budget is a ceiling, not a goal); a rerun keeps both."""
    src, out = tmp_path / "in", tmp_path / "out"
    write_pair(src / "large", 0)
    write_pair(src / "small", 1, size=(H // 2, W // 2))
    args = ("batch", src, "-o", out, "--weights", weights_file, "--size", "500")
    first = run_cli(*args, env=ONE_THREAD, check=True)
    table = summary(first.stdout)
    assert (table["done"], table["failed"], table["under budget at the highest quality (this run)"]) == ("2", "0", "1"), first.stdout
    sizes = {name: (out / f"{name}.sbic").stat().st_size for name in ("large", "small")}
    qualities = {name: Container.from_bytes((out / f"{name}.sbic").read_bytes()).quality_value for name in sizes}
    assert qualities["small"] == 5 and sizes["small"] < 500 * 0.97, (qualities, sizes)
    assert qualities["large"] < 5 and sizes["large"] <= 500, (qualities, sizes)
    again = run_cli(*args, env=ONE_THREAD, check=True)
    assert summary(again.stdout)["skipped (valid output exists)"] == "2", again.stdout


def run_cli_under_limit(limit: int, *args: str | Path) -> subprocess.CompletedProcess:
    """`stereo-codec` as a real subprocess whose default pixel limit per view is lowered to `limit`."""
    lowered = f"import runpy, stereocodec.limits as l; l.DEFAULT_MAX_PIXELS = {limit}; runpy.run_module('stereocodec', run_name='__main__')"
    return subprocess.run([sys.executable, "-c", lowered, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **ONE_THREAD}, timeout=900)  # fmt: skip


def test_batch_max_pixels_lets_a_pair_over_the_limit_through(tmp_path: Path, weights_file: Path) -> None:
    """Without --max-pixels a pair over the limit fails alone, in one line, and the others are coded; with
    it the pair is coded too (in worker processes), and the pairs already coded are kept: the pixel
    limit is not a setting of the file."""
    src, out = tmp_path / "in", tmp_path / "out"
    write_pair(src / "big", 0)  # H x W = 6,144 pixels a view
    write_pair(src / "small", 1, size=(H // 2, W // 2))
    args = ("batch", src, "-o", out, "--weights", weights_file)
    refused = run_cli_under_limit(4000, *args)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert (summary(refused.stdout)["done"], summary(refused.stdout)["failed"]) == ("1", "1"), refused.stdout
    ((name, reason),) = re.findall(r"^failed: (\S+): (.*)$", refused.stdout, re.M)
    assert name == "big" and f"{W}x{H}" in reason and reason.endswith(f"--max-pixels {H * W} raises it"), reason
    assert sorted(outputs(out)) == ["small.sbic"]
    allowed = run_cli_under_limit(4000, *args, "--max-pixels", str(H * W), "--workers", "2")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    table = summary(allowed.stdout)
    assert (table["done"], table["skipped (valid output exists)"]) == ("1", "1"), allowed.stdout
    big = Container.from_bytes((out / "big.sbic").read_bytes())
    assert (big.views[0].height, big.views[0].width) == (H, W)


def test_engine_ray_without_ray_installed_is_one_line(tmp_path: Path, weights_file: Path) -> None:
    """Ray is an optional extra: without it, --engine ray says how to install it, before any work."""
    src = tree(tmp_path / "in", ["a"])
    no_ray = "import runpy, sys; sys.modules['ray'] = None; runpy.run_module('stereocodec', run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", no_ray, "batch", src, "-o", tmp_path / "out", "--weights", weights_file,
                           "--engine", "ray"], capture_output=True, text=True, env={**os.environ, **ONE_THREAD}, timeout=300)
    assert_clean_error(proc)
    assert 'needs Ray, the optional "ray" extra: pip install -e ".[ray]"' in proc.stderr and not (tmp_path / "out").exists()

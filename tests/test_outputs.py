"""Safe outputs: never an input overwritten, both views or neither, one-line OS errors, -o FOLDER, -."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, assert_clean_error, run_cli
from stereocodec.io.images import InputError
from stereocodec.io.outputs import decode_outputs, encode_output, refuse_inputs, write_images_together

STORE_FIXTURES = ROOT / "tests" / "data" / "store"
SBIC = STORE_FIXTURES / "bisic-fast-step25451.sbic"
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the CLI beside the test process on a 2-core machine


@pytest.fixture()
def pair(tmp_path) -> tuple[Path, Path]:
    """A real 64x64 pair (decoded fixture views) copied into tmp_path."""
    paths = []
    for side in ("left", "right"):
        path = tmp_path / f"{side}.png"
        path.write_bytes((STORE_FIXTURES / f"bisic-fast-step25451-{side}.png").read_bytes())
        paths.append(path)
    return paths[0], paths[1]


def unwritable_dir(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores permissions: use /proc)."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    if not Path("/proc/self").is_dir():
        pytest.skip("running as root without /proc: no folder is unwritable")
    return Path("/proc")


def test_an_input_is_never_an_output(tmp_path, pair) -> None:
    left, right = pair
    link = tmp_path / "link.sbic"
    link.symlink_to(left)
    hard = tmp_path / "hard.sbic"
    os.link(right, hard)
    for out in (link, hard, tmp_path / "." / "left.png"):
        with pytest.raises(InputError, match="is one of the inputs"):
            encode_output(out, left, right)
    with pytest.raises(InputError, match="is one of the inputs"):
        decode_outputs(SBIC, None, tmp_path / "a.png", SBIC)
    refuse_inputs([tmp_path / "new.sbic"], [left, right, Path("-")])


def test_encode_output_names(tmp_path, pair) -> None:
    left, right = pair
    with pytest.raises(InputError, match=r"not a \.png image; use -o .*out\.sbic"):
        encode_output(tmp_path / "out.png", left, right)
    path, note = encode_output(tmp_path / "out.bin", left, right)
    assert path == tmp_path / "out.bin" and "does not end in .sbic" in note
    folder = tmp_path / "folder"
    folder.mkdir()
    assert encode_output(folder, left, right) == (folder / "left.sbic", None)
    assert decode_outputs(SBIC, folder, None, None) == (folder / f"{SBIC.stem}_left.png", folder / f"{SBIC.stem}_right.png")
    assert decode_outputs(Path("-"), folder, None, None)[0] == folder / "stdin_left.png"
    with pytest.raises(InputError, match="decode -: give -o"):
        decode_outputs(Path("-"), None, None, None)


def test_both_views_or_neither(tmp_path) -> None:
    img = Image.new("RGB", (4, 4))
    bad = unwritable_dir(tmp_path) / "right.png"
    with pytest.raises(InputError, match="cannot write"):
        write_images_together([(tmp_path / "left.png", img), (bad, img)])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "ro") == []
    write_images_together([(tmp_path / "left.png", img), (tmp_path / "right.png", img)])
    assert Image.open(tmp_path / "right.png").size == (4, 4)


def test_cli_refuses_to_overwrite_an_input_even_with_force(tmp_path, pair) -> None:
    left, right = pair
    before = left.read_bytes()
    link = tmp_path / "pair.sbic"
    link.symlink_to(left)
    proc = run_cli("encode", left, right, "-o", link, "--force", env=ONE_THREAD)
    assert_clean_error(proc)
    assert proc.returncode == 1 and "is one of the inputs" in proc.stderr
    assert left.read_bytes() == before


def test_cli_unwritable_outputs_are_one_line_errors(tmp_path) -> None:
    bad = unwritable_dir(tmp_path)
    proc = run_cli("decode", SBIC, "--left", tmp_path / "ok_left.png", "--right", bad / "r.png", env=ONE_THREAD)
    assert_clean_error(proc)
    assert proc.returncode == 1 and "internal error" not in proc.stderr and "cannot write" in proc.stderr
    assert not (tmp_path / "ok_left.png").exists()  # was: the left view stayed behind
    with pytest.raises(InputError, match="cannot write there"):
        encode_output(bad / "x.sbic", SBIC, SBIC)


def test_cli_stdout_and_stdin(tmp_path, pair) -> None:
    """`encode -o -` writes the .sbic to standard output; `decode -` reads it from standard input."""
    left, right = pair
    cmd, env = [sys.executable, "-m", "stereocodec"], {**os.environ, **ONE_THREAD}
    enc = subprocess.run([*cmd, "encode", left, right, "-o", "-", "-q", "0"], capture_output=True, env=env, timeout=600)
    assert enc.returncode == 0, enc.stderr
    assert enc.stdout[:4] == b"SBIC" and not (tmp_path / "-").exists()
    out = tmp_path / "views"
    out.mkdir()
    dec = subprocess.run([*cmd, "decode", "-", "-o", out], input=enc.stdout, capture_output=True, env=env, timeout=600)
    assert dec.returncode == 0, dec.stderr
    assert Image.open(out / "stdin_left.png").size == (64, 64) and (out / "stdin_right.png").is_file()


@pytest.mark.parametrize("args", [("encode", "a.png", "b.png", "--size", "0"), ("encode", "--variant", "foo", "a.png", "b.png"),
                                  ("decode",), ("no-such-command",)])
def test_cli_usage_errors_are_one_line_with_exit_1(args: tuple[str, ...]) -> None:
    proc = run_cli(*args)
    assert_clean_error(proc)
    assert proc.returncode == 1 and "--help" in proc.stderr


def test_cli_errors_keep_brackets_in_paths(tmp_path) -> None:
    """Error lines are plain text, not rich markup: a path like `scan[ray].png` is shown whole."""
    proc = run_cli("info", tmp_path / "scan[ray].sbic", env=ONE_THREAD)
    assert_clean_error(proc)
    assert proc.returncode == 1 and "scan[ray].sbic" in proc.stderr

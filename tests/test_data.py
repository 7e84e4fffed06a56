"""core.data: folder data sets, statistics, validation, download and the command line."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tonic

import core.data as data
import helpers
from core.data import (
    SIMULATION_MARKER,
    SPLITS,
    DatasetNotFoundError,
    DataSource,
    DataUnavailableError,
    NMNISTFolder,
    check_folder,
    class_folder,
    dataset_stats,
    default_home,
    default_source,
    download_nmnist,
    main,
    read_simulation_info,
    recording_path,
    scan_split,
    split_folder,
    validate,
)
from core.events import NMNISTFormatError, encode_nmnist, read_nmnist, write_nmnist
from core.files import default_home as files_default_home
from helpers import write_folder

REPO = Path(__file__).resolve().parents[1]


def random_events(rng: np.random.Generator, n: int) -> np.ndarray:
    return helpers.random_events(n, rng)


def make_folder(root: Path, counts: dict[str, dict[int, int]], seed: int = 0) -> dict[Path, np.ndarray]:
    """Write ``counts[split][digit]`` random recordings under ``root/NMNIST``; returns what was written."""
    rng = np.random.default_rng(seed)
    return write_folder(root, counts, lambda split, digit, k: random_events(rng, int(rng.integers(1, 60))),
                        file_name=lambda k: f"{k * 7 + 3:05d}.bin")


@pytest.fixture()
def small_root(tmp_path: Path) -> Path:
    root = tmp_path / "small"
    make_folder(root, {"Train": {0: 3, 1: 2, 7: 4}, "Test": {1: 1, 9: 2}})
    return root


@pytest.fixture()
def root_with_bad_file(small_root: Path) -> tuple[Path, Path]:
    bad = small_root / "NMNIST" / "Train" / "1" / "00001.bin"  # sorts before the good ones of digit 1
    bad.write_bytes(b"\x01\x02\x03\x04\x05\x06\x07")
    return small_root, bad


# ---------------------------------------------------------------- the folder layout


def test_layout_paths_are_nmnists(tmp_path: Path) -> None:
    assert split_folder(tmp_path, "Test") == tmp_path / "NMNIST" / "Test"
    assert class_folder(tmp_path, "Train", np.int64(7)) == tmp_path / "NMNIST" / "Train" / "7"
    assert recording_path(tmp_path, "Test", 3, 12) == tmp_path / "NMNIST" / "Test" / "3" / "00012.bin"
    assert recording_path(str(tmp_path), "Train", 0, 123456).name == "123456.bin"  # never truncated
    assert recording_path(tmp_path, "Train", 0, 7, digits=6).name == "000007.bin"
    write_nmnist(recording_path(tmp_path, "Test", 3, 12), random_events(np.random.default_rng(0), 4))
    assert scan_split(tmp_path, "Test") == [(recording_path(tmp_path, "Test", 3, 12), 3)]


def test_check_folder_says_what_is_wrong_in_plain_text(small_root: Path, tmp_path: Path) -> None:
    assert check_folder("  ").source is None and "NMNIST/Train" in check_folder("").problem
    missing = check_folder(str(tmp_path / "no_such_folder"))
    assert missing.source is None and missing.problem.startswith(f"{tmp_path / 'no_such_folder'} is not a folder.")
    assert "NMNIST/Train/<digit>/*.bin" in missing.problem  # plain text: escaping is the page's job
    (tmp_path / "empty").mkdir()
    empty = check_folder(str(tmp_path / "empty"))
    assert empty.source is None and empty.problem.startswith("No N-MNIST recordings found in")
    found = check_folder(f" {small_root} ")
    assert found.problem is None and found.source == DataSource(small_root, "nmnist")


def test_simulation_info_is_read_only_from_a_json_object(tmp_path: Path) -> None:
    assert read_simulation_info(tmp_path) is None
    (tmp_path / SIMULATION_MARKER).write_text("{ torn")
    assert read_simulation_info(tmp_path) is None
    (tmp_path / SIMULATION_MARKER).write_text("[1, 2]")
    assert read_simulation_info(tmp_path) is None
    (tmp_path / SIMULATION_MARKER).write_text('{"seed": 3}')
    assert read_simulation_info(str(tmp_path)) == {"seed": 3}


# ---------------------------------------------------------------- NMNISTFolder


def test_folder_lists_files_by_digit_then_name(small_root: Path) -> None:
    ds = NMNISTFolder(small_root, "Train")
    assert len(ds) == 9
    assert ds.targets.dtype == np.int64
    assert ds.targets.tolist() == [0, 0, 0, 1, 1, 7, 7, 7, 7]
    assert ds.files == sorted(ds.files, key=lambda p: (int(p.parent.name), p.name))
    assert all(isinstance(f, Path) for f in ds.files)
    assert ds.root == small_root and ds.split == "Train"
    assert ds.indices_of(7).tolist() == [5, 6, 7, 8]
    assert ds.indices_of(3).tolist() == []
    assert ds.class_counts().tolist() == [3, 2, 0, 0, 0, 0, 0, 4, 0, 0]
    assert len(NMNISTFolder(small_root, "Test")) == 3


def test_getitem_reads_the_file_and_applies_transform(small_root: Path) -> None:
    written = make_folder(small_root, {"Train": {0: 3, 1: 2, 7: 4}})  # same seed, same content
    ds = NMNISTFolder(small_root, "Train")
    for i in (0, 4, -1):
        events, label = ds[i]
        assert isinstance(label, int) and label == ds.targets[i]
        assert np.array_equal(events, written[ds.files[i]])
    counted = NMNISTFolder(small_root, "Train", transform=len)
    assert counted[2] == (len(written[ds.files[2]]), 0)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_folder_matches_tonic_nmnist_order_and_samples(real_nmnist_root: Path, monkeypatch) -> None:
    # tonic refuses fewer than 10,000 files; with its check disabled it is the oracle for order and labels.
    monkeypatch.setattr(tonic.datasets.NMNIST, "_check_exists", lambda self: True)
    for split in SPLITS:
        ours = NMNISTFolder(real_nmnist_root, split)
        theirs = tonic.datasets.NMNIST(save_to=str(real_nmnist_root), train=split == "Train")
        assert [str(f) for f in ours.files] == [str(Path(f)) for f in theirs.data]
        assert ours.targets.tolist() == list(theirs.targets)
        for i in (0, len(ours) // 2, len(ours) - 1):
            (ev, label), (tev, tlabel) = ours[i], theirs[i]
            assert label == tlabel and ev.dtype == tev.dtype and np.array_equal(ev, tev)


def test_real_sample_sizes(real_nmnist_root: Path) -> None:
    assert len(NMNISTFolder(real_nmnist_root, "Train")) == 200
    assert len(NMNISTFolder(real_nmnist_root, "Test")) == 50


def test_bad_file_is_reported_and_the_rest_still_read(root_with_bad_file, caplog) -> None:
    root, bad = root_with_bad_file
    ds = NMNISTFolder(root, "Train")
    assert len(ds) == 10
    i = ds.files.index(bad)
    with pytest.raises(NMNISTFormatError, match="not a multiple of 5") as info:
        ds[i]
    assert str(bad) in str(info.value)
    assert str(bad) in ds.bad_files

    fresh = NMNISTFolder(root, "Train")
    with caplog.at_level(logging.WARNING, logger="core.data"):
        samples = list(fresh.iter_valid(with_index=True))
    assert [j for j, _, _ in samples] == [j for j in range(10) if j != i]
    assert [label for _, _, label in samples] == [0, 0, 0, 1, 1, 7, 7, 7, 7]
    assert list(fresh.bad_files) == [str(bad)]
    assert str(bad) in caplog.text

    skipping = NMNISTFolder(root, "Train", skip_bad=True)
    assert len(list(skipping)) == 9 and list(skipping.bad_files) == [str(bad)]
    with pytest.raises(NMNISTFormatError):
        list(NMNISTFolder(root, "Train"))


def test_missing_or_empty_roots_say_where_files_go(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        NMNISTFolder(tmp_path / "nowhere", "Train")
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "NMNIST/Train/<digit>/*.bin" in message
    (tmp_path / "empty" / "NMNIST" / "Train" / "3").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="no .bin recordings"):
        NMNISTFolder(tmp_path / "empty", "Train")
    with pytest.raises(ValueError, match="split must be one of"):
        NMNISTFolder(tmp_path, "train")


def test_partial_copy_with_one_split(tmp_path: Path) -> None:
    make_folder(tmp_path, {"Test": {4: 2}})
    assert len(NMNISTFolder(tmp_path, "Test")) == 2
    with pytest.raises(DatasetNotFoundError):
        NMNISTFolder(tmp_path, "Train")
    stats = dataset_stats(tmp_path)
    assert stats["Train"]["samples"] == 0 and stats["Test"]["samples"] == 2


# ---------------------------------------------------------------- statistics and validation


def test_stats_match_a_direct_computation(root_with_bad_file) -> None:
    root, bad = root_with_bad_file
    stats = dataset_stats(root)
    for split in SPLITS:
        ds = NMNISTFolder(root, split)
        good = [read_nmnist(f) for f in ds.files if f != bad]
        s = stats[split]
        assert s["samples"] == len(ds) and s["valid_samples"] == len(good)
        assert s["per_class"] == {str(d): int(c) for d, c in enumerate(np.bincount(ds.targets, minlength=10))}
        counts = np.array([len(e) for e in good])
        assert s["events"]["mean"] == pytest.approx(counts.mean())
        assert s["events"]["median"] == pytest.approx(np.median(counts))
        assert (s["events"]["min"], s["events"]["max"]) == (counts.min(), counts.max())
        assert s["duration_ms"]["max"] == pytest.approx(max(e["t"].max() - e["t"].min() for e in good) / 1000)
        on = sum(int(e["p"].sum()) for e in good) / counts.sum()
        assert s["on_fraction"] == pytest.approx(on)
    assert stats["Train"]["bad_files"] == {str(bad): "truncated: 7 bytes is not a multiple of 5 (2 trailing bytes)"}
    assert stats["Test"]["bad_files"] == {}
    json.dumps(stats)  # plain JSON types only


def test_stats_of_real_sample(real_nmnist_root: Path) -> None:
    stats = dataset_stats(real_nmnist_root)
    assert stats["Train"]["samples"] == 200 and stats["Test"]["samples"] == 50
    assert sum(stats["Train"]["per_class"].values()) == 200
    total = sum(len(tonic.io.read_mnist_file(str(f), dtype=tonic.datasets.NMNIST.dtype))
                for f in NMNISTFolder(real_nmnist_root, "Test").files)
    assert stats["Test"]["events"]["total"] == total
    for split in SPLITS:
        s = stats[split]
        assert 0.45 < s["on_fraction"] < 0.55
        assert 290 < s["duration_ms"]["median"] < 320 and s["duration_ms"]["max"] < 340
        assert 3000 < s["events"]["mean"] < 5000 and s["bad_files"] == {}
    assert validate(real_nmnist_root) == []


def test_validate_lists_every_bad_file(root_with_bad_file) -> None:
    root, bad = root_with_bad_file
    outside = root / "NMNIST" / "Test" / "9" / "00099.bin"
    outside.write_bytes(bytes([40, 1, 0, 0, 1]))
    (root / "NMNIST" / "Test" / "9" / "00100.bin").write_bytes(b"")
    problems = dict(validate(root))
    assert set(problems) == {str(bad), str(outside), str(root / "NMNIST" / "Test" / "9" / "00100.bin")}
    assert "outside the 34 x 34 sensor" in problems[str(outside)]
    with pytest.raises(DatasetNotFoundError):
        validate(root / "nothing")


# ---------------------------------------------------------------- sources


def test_default_home_and_source(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NMNIST_DASHBOARD_HOME", raising=False)
    assert default_home() == REPO / ".data"
    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(tmp_path))
    assert default_home() == tmp_path
    assert default_source() == DataSource(tmp_path / "simulated", "simulated")
    assert default_home is files_default_home  # one owner: core.files


def test_source_key_follows_contents(small_root: Path) -> None:
    source = DataSource.detect(small_root)
    assert source.kind == "nmnist" and source.is_complete
    assert str(small_root) in source.label and "N-MNIST" in source.label
    key = source.key
    assert key == DataSource(str(small_root), "nmnist").key and key.startswith("nmnist:")
    write_nmnist(small_root / "NMNIST" / "Test" / "5" / "00001.bin", random_events(np.random.default_rng(1), 5))
    assert source.key != key
    (small_root / "simulation.json").write_text('{"seed": 0}')
    simulated = DataSource.detect(small_root)
    assert simulated.kind == "simulated" and "Simulated" in simulated.label
    first = simulated.key
    (small_root / "simulation.json").write_text('{"seed": 1}')
    assert simulated.key != first
    with pytest.raises(ValueError, match="kind"):
        DataSource(small_root, "mnist")


# ---------------------------------------------------------------- download


def test_download_offline_fails_fast_and_says_where_files_go(monkeypatch, tmp_path: Path) -> None:
    def unreachable(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    start = time.perf_counter()
    with pytest.raises(DataUnavailableError) as info:
        download_nmnist(tmp_path / "nm")
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "Network is unreachable" in message
    assert str(tmp_path / "nm" / "NMNIST" / "Train") in message and "<digit>/*.bin" in message
    assert not (tmp_path / "nm").exists()


def test_stalled_connection_check_does_not_hang(monkeypatch) -> None:
    def stalled(*args, **kwargs):
        time.sleep(3)
        raise OSError("answered too late")

    monkeypatch.setattr(socket, "create_connection", stalled)
    start = time.perf_counter()
    reason = data.check_connection("https://data.mendeley.com", timeout=0.3)
    assert time.perf_counter() - start < 3
    assert reason is not None and "within 0.3 s" in reason


def test_download_fetches_and_unpacks_through_tonic(monkeypatch, tmp_path: Path) -> None:
    """The whole download path with only the network replaced: a local zip served by a file:// URL."""
    import hashlib
    import zipfile

    rng = np.random.default_rng(3)
    zips = {}
    for split in SPLITS:
        archive = tmp_path / "server" / f"{split.lower()}.zip"
        archive.parent.mkdir(exist_ok=True)
        with zipfile.ZipFile(archive, "w") as zf:  # N-MNIST's zips hold Train/<digit>/<id>.bin
            for digit in (2, 5):
                zf.writestr(f"{split}/{digit}/00001.bin", encode_nmnist(random_events(rng, 30)))
        zips[split] = archive
    nmnist = tonic.datasets.NMNIST
    for split, attr in (("Train", "train"), ("Test", "test")):
        monkeypatch.setattr(nmnist, f"{attr}_url", zips[split].as_uri())
        monkeypatch.setattr(nmnist, f"{attr}_md5", hashlib.md5(zips[split].read_bytes()).hexdigest())
    monkeypatch.setattr(data, "check_connection", lambda url, timeout=3.0: None)

    seen: list[tuple[int, int]] = []
    source = download_nmnist(tmp_path / "nm", progress=lambda done, total: seen.append((done, total)))
    assert source == DataSource(tmp_path / "nm", "nmnist")
    assert (tmp_path / "nm" / "NMNIST" / "train.zip").is_file()  # where tonic looks for it later
    for split in SPLITS:
        ds = NMNISTFolder(tmp_path / "nm", split)
        assert ds.targets.tolist() == [2, 5] and len(ds[0][0]) == 30
    assert seen and all(done == total for done, total in seen)  # small files: one chunk each

    monkeypatch.setattr(nmnist, "test_md5", "0" * 32)  # a corrupt archive is refused
    (tmp_path / "nm2").mkdir()
    with pytest.raises(DataUnavailableError, match="checksum"):
        download_nmnist(tmp_path / "nm2", splits=("Test",))


def test_download_uses_tonic_urls() -> None:
    import urllib.parse

    assert urllib.parse.urlsplit(tonic.datasets.NMNIST.base_url).hostname == urllib.parse.urlsplit(
        data.NMNIST_DOWNLOAD_HOST
    ).hostname
    assert (tonic.datasets.NMNIST.train_folder, tonic.datasets.NMNIST.test_folder) == SPLITS


# ---------------------------------------------------------------- command line


def test_cli_stats_json(small_root: Path, capsys) -> None:
    assert main(["stats", str(small_root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["Train"]["samples"] == 9 and out["Test"]["samples"] == 3
    assert out["Test"]["per_class"]["9"] == 2


def test_cli_stats_text(small_root: Path, capsys) -> None:
    assert main(["stats", str(small_root)]) == 0
    text = capsys.readouterr().out
    assert "Train: 9 samples" in text and "ON fraction" in text


def test_cli_validate_exit_status(root_with_bad_file, capsys) -> None:
    root, bad = root_with_bad_file
    assert main(["validate", str(root)]) == 1
    assert f"{bad}: truncated" in capsys.readouterr().out
    bad.unlink()
    assert main(["validate", str(root)]) == 0


def test_cli_bad_arguments_give_usage_errors(tmp_path: Path, capsys) -> None:
    for argv in ([], ["stats"], ["frobnicate"], ["generate", "--seed", "x"], ["stats", str(tmp_path / "none")],
                 ["generate", "--source", "mnist-idx", "--out", str(tmp_path / "o")]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2, argv
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err, argv


def test_cli_runs_as_module(real_nmnist_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "core.data", "stats", str(real_nmnist_root), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["Train"]["samples"] == 200 and out["Test"]["samples"] == 50


def test_cli_download_offline_message(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = (
        "import socket, sys\n"
        "def unreachable(*a, **k): raise OSError(101, 'Network is unreachable')\n"
        "socket.create_connection = unreachable\n"
        "from core.data import main\n"
        f"sys.exit(main(['download', {str(tmp_path)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "cannot download N-MNIST" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- generation (through core.saccade)


def write_idx(images: np.ndarray, labels: np.ndarray, folder: Path) -> tuple[Path, Path]:
    """MNIST IDX files (magic 2051 images, 2049 labels), big-endian sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    img, lab = folder / "images-idx3-ubyte", folder / "labels-idx1-ubyte"
    n, h, w = images.shape
    img.write_bytes(np.array([2051, n, h, w], ">u4").tobytes() + images.astype(np.uint8).tobytes())
    lab.write_bytes(np.array([2049, n], ">u4").tobytes() + labels.astype(np.uint8).tobytes())
    return img, lab


@pytest.fixture(scope="module")
def few_digits() -> tuple[np.ndarray, np.ndarray]:
    """Twelve 28 x 28 'digits': bright random strokes on black, like MNIST (no sklearn import: fast)."""
    rng = np.random.default_rng(7)
    images = np.zeros((12, 28, 28), dtype=np.uint8)
    for img in images:
        for _ in range(3):
            r, c = rng.integers(6, 18, 2)
            img[r : r + rng.integers(3, 10), c : c + rng.integers(2, 8)] = rng.integers(150, 256)
    return images, np.arange(12, dtype=np.int64) % 10


def test_cli_generate_sets_the_camera(tmp_path: Path, few_digits, capsys) -> None:
    """``--set FIELD=JSON`` changes the simulated camera; simulation.json records it; a bad one is refused in words."""
    img, lab = write_idx(*few_digits, tmp_path / "idx")
    base = ["generate", "--source", "mnist-idx", "--images", str(img), "--labels", str(lab), "--workers", "1"]
    out = tmp_path / "varied"
    assert main([*base, "--out", str(out), "--set", "vary_offset_px=1.0", "--set", "contrast_threshold=0.25"]) == 0
    config = json.loads((out / "simulation.json").read_text())["config"]
    assert config["vary_offset_px"] == 1.0 and config["contrast_threshold"] == 0.25
    for bad, words in (("nosuchfield=1", "no field 'nosuchfield'"), ("vary_offset_px", "expected FIELD=VALUE"),
                       ("vary_offset_px=one", "not JSON"), ("vary_offset_px=-1", "SimulationConfig.vary_offset_px")):
        with pytest.raises(SystemExit) as refused:
            main([*base, "--out", str(tmp_path / "refused"), "--set", bad])
        assert refused.value.code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_cli_generate_takes_a_range_of_the_bundled_mnist_images(tmp_path: Path, capsys) -> None:
    """``--source mnist --range A:B`` simulates MNIST test images A..B-1 and names them so (for fair evaluation)."""
    out = tmp_path / "range"
    assert main(["generate", "--source", "mnist", "--range", "50:62", "--out", str(out), "--workers", "1"]) == 0
    info = json.loads((out / "simulation.json").read_text())
    assert info["source"] == "mnist-t10k[50:62]"
    assert info["counts"]["Train"]["samples"] + info["counts"]["Test"]["samples"] == 12
    refusals = (("50", "expected START:STOP"), ("a:b", "expected START:STOP"), ("9990:10010", "must lie within"))
    for bad, words in refusals:
        with pytest.raises(SystemExit) as refused:
            main(["generate", "--source", "mnist", "--range", bad, "--out", str(tmp_path / "refused")])
        assert refused.value.code == 2 and words in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--source", "sklearn", "--range", "0:10", "--out", str(tmp_path / "refused")])
    assert "--range goes with --source mnist" in capsys.readouterr().err


def test_cli_generate_writes_a_valid_simulated_set(tmp_path: Path, few_digits, capsys) -> None:
    img, lab = write_idx(*few_digits, tmp_path / "idx")
    out = tmp_path / "sim"
    argv = ["generate", "--out", str(out), "--source", "mnist-idx", "--images", str(img), "--labels", str(lab),
            "--workers", "1", "--seed", "3"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "12/12" in captured.err and f"wrote 12 recordings to {out}" in captured.out
    info = json.loads((out / "simulation.json").read_text())
    assert info["seed"] == 3 and info["source"].startswith("mnist-idx:")
    assert validate(out) == []
    stats = dataset_stats(out)
    assert stats["kind"] == "simulated"
    assert stats["Train"]["samples"] + stats["Test"]["samples"] == 12 and stats["Test"]["samples"] >= 1
    labels = np.concatenate([NMNISTFolder(out, s).targets for s in SPLITS])
    assert sorted(labels.tolist()) == sorted(few_digits[1].tolist())
    first = [p.read_bytes() for p in NMNISTFolder(out, "Train").files]

    # Regenerating replaces the set; the same seed gives the same files.
    assert main(argv) == 0
    assert [p.read_bytes() for p in NMNISTFolder(out, "Train").files] == first
    assert sorted(p.name for p in out.iterdir()) == ["NMNIST", "simulation.json"]

    # A folder holding anything else is refused, not overwritten.
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit) as info_exit:
        main(["generate", "--out", str(other), "--source", "mnist-idx", "--images", str(img), "--labels", str(lab)])
    assert info_exit.value.code == 2 and "not a simulated data set" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep me"


def test_ensure_default_dataset_generates_once(monkeypatch, tmp_path: Path, few_digits) -> None:
    import core.images
    import core.saccade

    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(core.images, "load_default_digits", lambda: few_digits)
    seen: list[tuple[int, int]] = []
    source = data.ensure_default_dataset(progress=lambda done, total: seen.append((done, total)), workers=1)
    assert source == default_source() and source.root == tmp_path / "home" / "simulated"
    assert source.is_complete and seen[-1] == (12, 12)
    assert len(source.dataset("Train")) + len(source.dataset("Test")) == 12
    key = source.key

    def must_not_run(*args, **kwargs):
        raise AssertionError("a complete set must not be generated again")

    monkeypatch.setattr(core.saccade, "generate_dataset", must_not_run)
    assert data.ensure_default_dataset() == source and source.key == key

    (source.root / "simulation.json").unlink()  # an interrupted generation: incomplete
    assert not source.is_complete
    with pytest.raises(AssertionError, match="must not be generated"):
        data.ensure_default_dataset()


def test_the_default_set_says_how_it_was_made(monkeypatch, tmp_path: Path, few_digits) -> None:
    import core.images

    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(core.images, "load_default_digits", lambda: few_digits)
    source = data.ensure_default_dataset(workers=1)
    info = data.read_simulation_info(source.root)
    assert info["default_set_version"] == data.DEFAULT_SET_VERSION
    assert info["source"] == core.images.default_digits_source()
    made = {name: info["config"][name] for name in data.DEFAULT_SET_VARIATION}
    assert made == data.DEFAULT_SET_VARIATION  # every recording drew its camera within these spreads
    assert not data.outdated_default_set(source.root)


def test_a_default_set_from_an_older_version_is_made_again(monkeypatch, tmp_path: Path, few_digits) -> None:
    """A home whose default set an older project made (other content, no or another version) regenerates it."""
    import core.images

    monkeypatch.setenv("NMNIST_DASHBOARD_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(core.images, "load_default_digits", lambda: few_digits)
    source = data.ensure_default_dataset(workers=1)
    marker = source.root / "simulation.json"
    info = json.loads(marker.read_text())
    for old in (None, data.DEFAULT_SET_VERSION - 1, data.DEFAULT_SET_VERSION + 1):
        if old is None:  # made before sets had a version: version 1
            info.pop("default_set_version")
            if data.DEFAULT_SET_VERSION == 1:
                marker.write_text(json.dumps(info))
                assert not data.outdated_default_set(source.root)
                continue
        else:
            info["default_set_version"] = old
        marker.write_text(json.dumps(info))
        assert data.outdated_default_set(source.root)
        data.ensure_default_dataset(workers=1)
        assert data.read_simulation_info(source.root)["default_set_version"] == data.DEFAULT_SET_VERSION

    # Sets of other images, or made by hand, are never replaced on that account.
    info["source"] = "sklearn-digits"
    info.pop("default_set_version")
    marker.write_text(json.dumps(info))
    assert not data.outdated_default_set(source.root)
    marker.write_text(json.dumps({"made_by": "hand"}))
    assert not data.outdated_default_set(source.root)
    assert not data.outdated_default_set(tmp_path / "nowhere")


def test_a_folder_under_an_unknown_users_home_is_refused_in_words() -> None:
    """``~nosuchuser/data`` (typed, or from a link) names the user, where pathlib raises RuntimeError."""
    check = check_folder("~nosuchuser_xyz/data")
    assert check.source is None and "no user named 'nosuchuser_xyz'" in check.problem

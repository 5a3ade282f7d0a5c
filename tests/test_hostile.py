"""A checkpoint, a model name and a file name can come from someone hostile: Tim refuses cleanly and leaks nothing.

Every case of issue 22's table is built here from a tiny checkpoint and run through `tim predict` as a user
would: exit 1 with one `error:` line naming the file, the field and what is expected (no traceback), an
earlier results.csv untouched, no file outside the checkpoint opened. Then the app (no HTML from a
checkpoint or a file name reaches the page), the CSV (no cell a spreadsheet runs), `--out` (replaced only
at the end), the engine cache (broken files replaced, no temporary file, a full disk -> eager) and the
special files `tim predict` may be handed (FIFO, device, link loop).
"""
from __future__ import annotations

import csv
import errno
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from app_helpers import make_checkpoint, picture, save
from safetensors.torch import load_file, save_file

import tim.predict
from tim import engine as engines
from tim.cli import main as tim_main
from tim.spreadsheet import safe_cell

REPO = Path(__file__).resolve().parents[1]
ARTISTS = ["Monet", "Van Gogh", "Rembrandt", "Mondrian", "Hokusai"]
FEATURES = 256  # test_efficientnet's pooled features
OPENED: list[str] = []  # files Python opened while a case ran (an audit hook records them)
RECORDING = []  # non-empty while a case runs


def _record_opens(event, args):
    if RECORDING and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_record_opens)


# ---------------------------------------------------------------- a good checkpoint, and ways to break it


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A tiny checkpoint with a calibration and a Mahalanobis unknown-artist decision (its own tensor file)."""
    folder = make_checkpoint(tmp_path_factory.mktemp("good") / "ckpt", "test_efficientnet", image_size=32)
    config = read(folder)
    config["tim"]["calibration"] = {"method": "temperature", "temperature": 1.5}
    config["tim"]["unknown"] = {"score": "mahalanobis", "threshold": 1e9, "file": "unknown.safetensors"}
    write(folder, config)
    save_file(statistics(), str(folder / "unknown.safetensors"))
    return folder


def statistics(k: int = len(ARTISTS), d: int = FEATURES) -> dict:
    return {"class_means": torch.zeros(k, d), "precision": torch.eye(d)}


def read(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def write(folder: Path, config) -> None:
    (folder / "config.json").write_text(json.dumps(config))


def edit(**changes):
    """A mutation setting dotted config fields ("tim.preprocessing.image_size") to values (DELETE removes)."""
    def mutate(folder: Path):
        config = read(folder)
        for dotted, value in changes.items():
            *parents, last = dotted.split("__")
            block = config
            for part in parents:
                block = block[part]
            if value is DELETE:
                block.pop(last, None)
            else:
                block[last] = value
        write(folder, config)
    return mutate


DELETE = object()


def raw_config(text: str | bytes):
    def mutate(folder: Path):
        data = text.encode() if isinstance(text, str) else text
        (folder / "config.json").write_bytes(data)
    return mutate


def weights(change):
    """A mutation of model.safetensors' tensors: change(dict) edits them in place."""
    def mutate(folder: Path):
        tensors = load_file(str(folder / "model.safetensors"))
        change(tensors)
        save_file(tensors, str(folder / "model.safetensors"))
    return mutate


def file_bytes(name: str, data: bytes):
    def mutate(folder: Path):
        (folder / name).write_bytes(data)
    return mutate


def unknown_tensors(tensors: dict):
    def mutate(folder: Path):
        save_file(tensors, str(folder / "unknown.safetensors"))
    return mutate


def painting_head(threshold=0.5, d: int = FEATURES, file: str = "painting.safetensors"):
    """A not-a-painting decision (tim.painting) added to the good checkpoint, with a head of feature size d."""
    def mutate(folder: Path):
        config = read(folder)
        config["tim"]["painting"] = {"file": file, "threshold": threshold}
        write(folder, config)
        save_file({"mean": torch.zeros(d), "scale": torch.ones(d), "coef": torch.zeros(2, d),
                   "intercept": torch.zeros(2)}, str(folder / "painting.safetensors"))
    return mutate


def other_architecture(folder: Path):
    """A test_resnet config in front of test_efficientnet weights (what "resnet18 with Lite0 weights" is in small)."""
    other = make_checkpoint(folder.parent / "resnet-source", "test_resnet", image_size=32)
    config = read(other)
    config["tim"] = read(folder)["tim"]
    write(folder, config)


def set_first(tensors, value):
    name = next(n for n, t in tensors.items() if t.is_floating_point() and t.numel() > 1)
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = value


def outside_file(name: str):
    """tim.unknown.file naming a valid statistics file outside the checkpoint (reading it would make the run pass)."""
    def mutate(folder: Path):
        outside = folder.parent / "outside"
        outside.mkdir(exist_ok=True)
        save_file(statistics(), str(outside / "unknown.safetensors"))
        target = {"dotdot": "../outside/unknown.safetensors", "absolute": str(outside / "unknown.safetensors")}
        if name == "symlink":
            (folder / "unknown.safetensors").unlink()
            (folder / "unknown.safetensors").symlink_to(outside / "unknown.safetensors")
            return
        edit(tim__unknown__file=target[name])(folder)
    return mutate


def linked_out(name: str):
    def mutate(folder: Path):
        outside = folder.parent / "outside"
        outside.mkdir(exist_ok=True)
        shutil.copy(folder / name, outside / name)
        (folder / name).unlink()
        (folder / name).symlink_to(outside / name)
    return mutate


CASES = {  # case -> (mutation, what the one error line must say)
    "weights are a pickle": (file_bytes("model.safetensors", pickle.dumps({"w": [1.0] * 10}, protocol=4)),
                             r"model\.safetensors: not a safetensors file \(a pickle"),
    "weights are a torch.save zip": (file_bytes("model.safetensors", b"PK\x03\x04" + b"\0" * 200),
                                     r"model\.safetensors: not a safetensors file \(a pickle"),
    "weights are empty": (file_bytes("model.safetensors", b""), r"model\.safetensors: not a safetensors file \(an empty"),
    "unknown statistics are garbage": (file_bytes("unknown.safetensors", os.urandom(300)),
                                       r"unknown\.safetensors: not a safetensors file"),
    "config is a list": (raw_config("[1, 2]"), r"config\.json: holds an array .*not a JSON object"),
    "config is null": (raw_config("null"), r"config\.json: holds null"),
    "config is binary": (raw_config(b"\x89PNG\r\n\x1a\n\xff\xfe\0\0"), r"config\.json: not a text file"),
    "config is 10,000 levels deep": (raw_config("[" * 10_000 + "]" * 10_000), r"config\.json: JSON nested too deeply"),
    "config is not JSON": (raw_config("{not json"), r"config\.json: not valid JSON"),
    "image_size a string": (edit(tim__preprocessing__image_size="224"),
                            r"tim\.preprocessing\.image_size = \"224\": expected a whole number from 32 to 1024"),
    "image_size null": (edit(tim__preprocessing__image_size=None), r"image_size = null: expected a whole number"),
    "image_size missing": (edit(tim__preprocessing__image_size=DELETE), r"image_size missing: expected a whole number"),
    "image_size NaN": (edit(tim__preprocessing__image_size=float("nan")), r"image_size = NaN: expected"),
    "image_size 1": (edit(tim__preprocessing__image_size=1), r"image_size = 1: expected a whole number from 32"),
    "image_size 3.5": (edit(tim__preprocessing__image_size=3.5), r"image_size = 3\.5: expected"),
    "image_size -1": (edit(tim__preprocessing__image_size=-1), r"image_size = -1: expected"),
    "image_size 0": (edit(tim__preprocessing__image_size=0), r"image_size = 0: expected"),
    "image_size 100000": (edit(tim__preprocessing__image_size=100_000), r"image_size = 100000: expected .* to 1024"),
    "image_size true": (edit(tim__preprocessing__image_size=True), r"image_size = true: expected"),
    "resize_mode bogus": (edit(tim__preprocessing__resize_mode="bogus"),
                          r"resize_mode = \"bogus\": expected one of pad, stretch"),
    "pad_color not a colour": (edit(tim__preprocessing__pad_color=[0, 0, 999]), r"pad_color = \[0, 0, 999\]"),
    "preprocessing missing": (edit(tim__preprocessing=DELETE), r"no 'tim\.preprocessing' block"),
    "architecture unknown to timm": (edit(architecture="no_such_net"), r"architecture = \"no_such_net\": expected"),
    "architecture of another family": (other_architecture, r"not weights of .*'test_resnet'"),
    "labels and num_classes both wrong": (edit(num_classes=7, label_names=[f"a{i}" for i in range(7)],
                                               model_args__num_classes=7),
                                          r"num_classes = 7 and 7 label_names, but the classifier .* has 5 outputs"),
    "num_classes a string": (edit(num_classes="5"), r"num_classes = \"5\": expected a whole number"),
    "fewer labels than outputs": (edit(label_names=ARTISTS[:3]), r"label_names = .*expected 5 names"),
    "labels not strings": (edit(label_names=[1, 2, 3, 4, 5]), r"label_names = .*expected a list of artist names"),
    "model_args num_classes disagrees": (edit(model_args__num_classes=9), r"model_args\.num_classes = 9"),
    "model_args timm refuses": (edit(model_args__no_such_argument=1), r"model_args = .*settings timm's test_efficientnet accepts"),
    "model_args not an object": (edit(model_args=[1]), r"model_args = \[1\]: expected a JSON object"),
    "interpolation unknown": (edit(pretrained_cfg__interpolation="magic"), r"pretrained_cfg\.interpolation = \"magic\""),
    "std of zero": (edit(pretrained_cfg__std=[0.5, 0, 0.5]), r"pretrained_cfg\.std = .*each above 0"),
    "a weight missing": (weights(lambda t: t.pop(sorted(t)[0])), r"1 tensor test_efficientnet needs missing"),
    "a weight mis-shaped": (weights(lambda t: t.update({"classifier.bias": torch.zeros(9)})),
                            r"tensor 'classifier\.bias' has shape \(9,\)"),
    "an extra weight": (weights(lambda t: t.update({"backdoor": torch.zeros(3)})), r"1 tensor it has no place for \(e.g. backdoor\)"),
    "weights with NaN": (weights(lambda t: set_first(t, float("nan"))), r"NaN or infinite values"),
    "weights with infinity": (weights(lambda t: set_first(t, float("inf"))), r"NaN or infinite values"),
    "calibration method unknown": (edit(tim__calibration__method="magic"), r"calibration\.method = \"magic\""),
    "temperature a string": (edit(tim__calibration__temperature="1.5"),
                             r"calibration\.temperature = \"1\.5\": expected a finite number above 0"),
    "temperature negative": (edit(tim__calibration__temperature=-1.0), r"temperature = -1\.0: expected .* above 0"),
    "temperature zero": (edit(tim__calibration__temperature=0), r"temperature = 0: expected .* above 0"),
    "temperature NaN": (edit(tim__calibration__temperature=float("nan")), r"temperature = NaN"),
    "unknown threshold missing": (edit(tim__unknown__threshold=DELETE),
                                  r"tim\.unknown\.threshold missing: expected a finite number"),
    "unknown threshold infinite": (edit(tim__unknown__threshold=float("inf")), r"threshold = Infinity"),
    "unknown score bogus": (edit(tim__unknown__score="vibes"), r"tim\.unknown\.score = \"vibes\": expected one of"),
    "unknown statistics file missing": (edit(tim__unknown__file=DELETE), r"tim\.unknown\.file missing: expected"),
    "unknown statistics mis-shaped": (unknown_tensors(statistics(d=7)), r"'class_means' has shape \(5, 7\); expected \(5, 256\)"),
    "unknown statistics with other keys": (unknown_tensors({"bank": torch.zeros(3, FEATURES)}),
                                           r"holds tensors \['bank'\]; expected exactly \['class_means', 'precision'\]"),
    "unknown statistics with NaN": (unknown_tensors({"class_means": torch.full((5, FEATURES), float("nan")),
                                                     "precision": torch.eye(FEATURES)}), r"'class_means' holds"),
    "unknown file ../outside": (outside_file("dotdot"), r"tim\.unknown\.file = \"\.\./outside/.*inside the checkpoint"),
    "unknown file an absolute path": (outside_file("absolute"), r"tim\.unknown\.file = \"/.*inside the checkpoint"),
    "unknown file a link out": (outside_file("symlink"), r"is a link to .*outside the checkpoint folder"),
    "painting threshold infinite": (painting_head(threshold=float("inf")), r"tim\.painting\.threshold = Infinity"),
    "painting head mis-shaped": (painting_head(d=7), r"painting\.safetensors: tensor 'mean' has shape \(7\); expected \(256\)"),
    "painting file ../outside": (painting_head(file="../outside/painting.safetensors"),
                                 r"tim\.painting\.file = \"\.\./outside/.*inside the checkpoint"),
    "weights a link out": (linked_out("model.safetensors"), r"model\.safetensors: is a link to .*outside"),
    "config a link out": (linked_out("config.json"), r"config\.json: is a link to .*outside"),
}


@pytest.fixture
def image(tmp_path) -> Path:
    return save(picture(80, 60), tmp_path / "painting.jpg")


def predict(argv) -> int:
    return tim_main(["predict", *map(str, argv)])


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_checkpoint_is_refused_with_one_line_and_nothing_else_happens(case, good, tmp_path, image, capsys):
    mutate, message = CASES[case]
    folder = tmp_path / "ckpt"
    shutil.copytree(good, folder, symlinks=True)
    mutate(folder)
    out = tmp_path / "results.csv"
    out.write_text("path,artist\nearlier.jpg,Monet\n")
    OPENED.clear()
    RECORDING.append(case)
    try:
        code = predict([image, "--model", folder, "--out", out])
    finally:
        RECORDING.clear()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1, (case, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (case, err)
    assert re.search(message, lines[0]), (case, lines[0])
    assert out.read_text() == "path,artist\nearlier.jpg,Monet\n"  # the earlier results are kept
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary CSV
    outside = str(tmp_path / "outside")
    assert not [p for p in OPENED if p.startswith(outside) or p == str(image)], case  # before any image


def test_the_good_checkpoint_passes_and_answers(good, tmp_path, image, capsys):
    """The control: the checkpoint every case above breaks in one place is accepted."""
    assert predict([image, "--model", good, "--out", tmp_path / "r.csv"]) == 0, capsys.readouterr().err
    [row] = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert row["artist"] in ARTISTS and row["error"] == ""


def test_an_old_checkpoint_with_num_classes_in_model_args_and_a_new_one_without_both_load(good, tmp_path, image,
                                                                                         capsys):
    from tim.validate import validate_checkpoint

    assert "num_classes" not in read(good).get("model_args", {})  # the layout Tim writes (issue 21)
    older = tmp_path / "older"
    shutil.copytree(good, older)
    edit(model_args__num_classes=len(ARTISTS))(older)  # what save_for_hf wrote before
    assert validate_checkpoint(older)["num_classes"] == len(ARTISTS)
    assert predict([image, "--model", older, "--out", tmp_path / "r.csv"]) == 0, capsys.readouterr().err


def test_tim_calibrate_can_repair_broken_statistics_it_is_about_to_replace(good, tmp_path):
    """`tim calibrate` rewrites tim.calibration and tim.unknown, so it checks everything else (and can fix those)."""
    from tim.checkpoint import CheckpointError
    from tim.validate import validate_checkpoint

    folder = tmp_path / "ckpt"
    shutil.copytree(good, folder)
    (folder / "unknown.safetensors").unlink()
    edit(tim__calibration__temperature=-1)(folder)
    with pytest.raises(CheckpointError, match="temperature = -1"):
        validate_checkpoint(folder)
    assert validate_checkpoint(folder, replacing=("tim.calibration", "tim.unknown"))["num_classes"] == len(ARTISTS)
    edit(tim__preprocessing__image_size=0)(folder)
    with pytest.raises(CheckpointError, match="image_size = 0"):  # the rest is still checked
        validate_checkpoint(folder, replacing=("tim.calibration", "tim.unknown"))


def test_a_hostile_hub_checkpoint_names_the_repo(good, tmp_path, image, capsys, monkeypatch):
    """The same validation for a Hub download (files are links into the cache's blobs/, which counts as inside)."""
    from huggingface_hub import constants
    from test_hub import files_of, put_in_hub_cache

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))

    files = files_of(good)
    put_in_hub_cache("someone/fine", files)
    assert predict([image, "--model", "someone/fine", "--out", tmp_path / "ok.csv"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    config = json.loads(files["config.json"])
    config["tim"]["unknown"]["file"] = "../../blobs/../../../../etc/passwd"
    put_in_hub_cache("someone/hostile", {**files, "config.json": json.dumps(config).encode()})
    assert predict([image, "--model", "someone/hostile", "--out", tmp_path / "r.csv"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: Hub model someone/hostile: ") and "inside the checkpoint folder" in line


def test_a_case_through_the_real_command_line(good, tmp_path, image):
    """The same refusal from a fresh `python -m tim` process: exit 1, one line, no traceback."""
    for name in ("weights are a pickle",):
        folder = tmp_path / name.replace(" ", "-")
        shutil.copytree(good, folder)
        CASES[name][0](folder)
        done = subprocess.run([sys.executable, "-m", "tim", "predict", str(image), "--model", str(folder),
                               "--out", str(tmp_path / "r.csv")], capture_output=True, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().count("\n") == 0 and re.search(CASES[name][1], done.stderr)


# ---------------------------------------------------------------- the CSV


def test_no_cell_of_the_csv_is_a_formula_and_the_raw_path_is_recoverable(good, tmp_path, monkeypatch, capsys):
    hostile = tmp_path / "hostile"
    shutil.copytree(good, hostile)
    edit(label_names=["=1+1", "+Renoir", "@Degas", "-Klee", "'quoted"])(hostile)
    monkeypatch.chdir(tmp_path)
    names = ['=HYPERLINK("x","y").jpg', "+cmd.jpg", "@SUM(1+1).jpg", "-2+3.jpg", "\tTab.jpg", "'apostrophe.jpg"]
    for i, name in enumerate(names):
        save(picture(60, 40, seed=i), tmp_path / name)
    (tmp_path / "=broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    names.append("=broken.jpg")
    assert predict(["--model", hostile, "--out", "r.csv", "--", *names]) == 0, capsys.readouterr().err
    rows = list(csv.reader(open("r.csv", newline="")))
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (cell, row)
    paths = [row[0][1:] if row[0].startswith("'") else row[0] for row in rows[1:]]  # the documented recovery
    assert paths == names
    good_rows = [dict(zip(rows[0], row)) for row in rows[1:] if not row[4]]
    assert len(good_rows) == 6 and all(0 < float(r["confidence"]) <= 1 and float(r["unknown_score"]) >= 0
                                       for r in good_rows)  # numbers stay numbers
    assert {r["artist"] for r in good_rows} <= {"'=1+1", "'+Renoir", "'@Degas", "'-Klee", "''quoted"}
    assert "FIFO" not in rows[-1][4] and rows[-1][4].startswith("'=broken.jpg: ")


def test_safe_cell_leaves_numbers_and_plain_text_alone():
    assert [safe_cell(v) for v in ("0.125000", "-0.5", "1e-3", "Monet", "", 3)] == ["0.125000", "-0.5", "1e-3",
                                                                                   "Monet", "", 3]
    assert [safe_cell(v) for v in ("=1", "+1+1", "-1+1", "@x", "\tx", "\rx", "'x")] == [
        "'=1", "'+1+1", "'-1+1", "'@x", "'\tx", "'\rx", "''x"]


# ---------------------------------------------------------------- --out is replaced only at the end


def test_a_crash_mid_run_leaves_the_old_csv_and_no_temporary_file(good, tmp_path, monkeypatch, capsys):
    images = [save(picture(60, 40, seed=s), tmp_path / "in" / f"{s}.jpg") for s in range(5)]
    out = tmp_path / "out" / "results.csv"
    out.parent.mkdir()
    out.write_text("the earlier results\n")
    calls = []
    answer = tim.predict.answer

    def crash_on_second_round(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C, or a kill the process survives long enough to clean up after
        return answer(*args, **kwargs)

    monkeypatch.setattr(tim.predict, "ROUND", 2)
    monkeypatch.setattr(tim.predict, "answer", crash_on_second_round)
    assert predict([tmp_path / "in", "--model", good, "--out", out]) == 130
    assert out.read_text() == "the earlier results\n" and sorted(out.parent.iterdir()) == [out]
    monkeypatch.setattr(tim.predict, "answer", answer)
    assert predict([tmp_path / "in", "--model", good, "--out", out]) == 0, capsys.readouterr().err
    assert len(list(csv.reader(open(out)))) == 1 + len(images) and sorted(out.parent.iterdir()) == [out]


# ---------------------------------------------------------------- the app


def rendered_html(markdown: str) -> str:
    """The page's HTML for a Markdown value, as a CommonMark renderer that passes raw HTML through makes it."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).render(markdown)


def assert_plain_text(markdown: str, *, allowed=("p", "strong", "h4", "em")):
    html = rendered_html(markdown)
    tags = set(re.findall(r"<\s*([a-zA-Z][a-zA-Z0-9]*)", html))
    assert tags <= set(allowed), (tags, markdown, html)


@pytest.fixture(scope="module")
def hostile_app(good, tmp_path_factory):
    from tim.app import TimApp
    from tim.catalog import ModelCatalog, ModelEntry

    root = tmp_path_factory.mktemp("models")
    evil = root / "<img src=x onerror=alert(1)>"
    shutil.copytree(good, evil)
    edit(label_names=['<img src="http://127.0.0.1:9/pixel.png">', "![p](http://127.0.0.1:9/p.png)",
                      "[click](javascript:alert(1))", "<script>alert(1)</script>", "- a list\n\n# a heading"])(evil)
    shutil.copytree(good, root / "fine")
    broken = root / "[broken](javascript:x) <b>"
    shutil.copytree(good, broken)
    edit(tim__preprocessing__image_size=100_000)(broken)
    catalog = ModelCatalog([ModelEntry.from_folder(p, "local") for p in sorted(root.iterdir())])
    catalog.check_folders()  # what ModelCatalog.discover does at start-up (without the bundled models, for speed)
    return TimApp(catalog)


def test_no_html_from_a_checkpoint_or_a_file_name_reaches_the_page(hostile_app, tmp_path):
    import gradio as gr

    app = hostile_app
    keys = list(app.catalog.entries)
    evil = next(k for k in keys if "img" in k)
    upload = save(picture(60, 40), tmp_path / '<img src="http://127.0.0.1:9/f.png">.jpg')
    broken_upload = tmp_path / "[x](http:⁄⁄y) <i>.jpg"
    broken_upload.write_bytes(b"not an image")
    for key in keys:
        assert_plain_text(app.describe(key))
    status, results = app.analyze(evil, [upload, broken_upload])
    assert_plain_text(status)
    assert results[0].explanation is not None and results[1].error
    status, comparisons = app.analyze_all([upload, broken_upload])
    assert_plain_text(status)
    with gr.Blocks() as page:  # the rows the page renders for these results
        for n, r in enumerate(results, 1):
            app._result_row(n, r, len(ARTISTS))
        for n, c in enumerate(comparisons, 1):
            app._comparison_rows(n, c)
    markdowns = [b.value for b in page.blocks.values() if isinstance(b, gr.Markdown)]
    assert len(markdowns) >= 4
    for value in markdowns:
        assert_plain_text(value)
    labels = [str(b.value) for b in page.blocks.values() if isinstance(b, gr.Label)]
    assert labels  # gr.Label shows its keys as text (Svelte text nodes), like the dropdown's choices


def test_a_model_that_fails_validation_is_listed_unavailable_with_its_reason_and_the_others_serve(hostile_app,
                                                                                                 tmp_path):
    app = hostile_app
    choices = dict((key, label) for label, key in app.catalog.choices())
    broken = next(k for k in choices if "broken" in k)
    assert choices[broken].endswith("· unavailable") and not any(
        label.endswith("unavailable") for key, label in choices.items() if key != broken)
    from tim.markup import markdown_text

    reason = app.catalog.errors[broken]
    assert "image_size = 100000: expected a whole number from 32 to 1024" in reason
    assert markdown_text(reason) in app.describe(broken)
    status, results = app.analyze(broken, [save(picture(60, 40), tmp_path / "a.jpg")])
    assert results == [] and "could not be loaded" in status and "other models still work" in status
    status, results = app.analyze(next(k for k in choices if "fine" in k), [tmp_path / "a.jpg"])
    assert results[0].explanation is not None


# ---------------------------------------------------------------- the engine cache


@pytest.fixture(scope="module")
def engine_checkpoint(tmp_path_factory) -> tuple[Path, bytes]:
    """A checkpoint and its engine, exported once for the module."""
    folder = make_checkpoint(tmp_path_factory.mktemp("engine") / "effnet", "test_efficientnet", image_size=32)
    from tim.predictor import Predictor

    Predictor.load(str(folder), engine="auto").engine  # noqa: B018
    [path] = sorted(folder.rglob("*.onnx"))
    data = path.read_bytes()
    shutil.rmtree(path.parent)
    return folder, data


def test_a_corrupt_engine_in_the_checkpoint_is_replaced_by_the_valid_one_in_the_cache(engine_checkpoint, tmp_path,
                                                                                     monkeypatch, capsys):
    from tim.predictor import Predictor

    source, data = engine_checkpoint
    folder = tmp_path / "ckpt"
    shutil.copytree(source, folder)
    monkeypatch.setattr(engines, "export_onnx", lambda *_: pytest.fail("nothing should be exported"))
    predictor = Predictor.load(str(folder), engine="auto")
    name = f"{engines.weights_sha256(predictor.model)[:32]}-{engines.build_tag('test_efficientnet', 32)}.onnx"
    beside, cached = [f / name for f in engines.engine_folders(folder)]
    for path, content in ((beside, b"garbage, not an ONNX graph"), (cached, data)):
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
    assert predictor.engine is not None
    assert capsys.readouterr().err.count("note: ") == 1
    assert beside.read_bytes() == data  # replaced where it lay
    assert Predictor.load(str(folder), engine="auto").engine is not None
    assert capsys.readouterr().err == ""  # and the next run says nothing


def test_a_full_disk_while_caching_the_engine_is_one_notice_eager_and_no_temporary_file(engine_checkpoint, tmp_path,
                                                                                       monkeypatch, capsys):
    from tim.predictor import Predictor

    source, data = engine_checkpoint
    folder = tmp_path / "ckpt"
    shutil.copytree(source, folder)
    monkeypatch.setattr(engines, "export_onnx", lambda *_: data)
    real = Path.write_bytes

    def fills_the_disk(self, content):
        real(self, content[: len(content) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", fills_the_disk)
    predictor = Predictor.load(str(folder), engine="auto")
    assert predictor.engine is None  # eager PyTorch
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert "no space left" in line and "using eager PyTorch" in line
    assert not [p for p in [*folder.rglob("*"), *(tmp_path / "tim-cache").rglob("*")] if ".tmp" in p.name]
    x = predictor.preprocess(save(picture(60, 40), tmp_path / "a.jpg"))[0][None]
    assert predictor.probabilities(x).shape == (1, len(ARTISTS))


def test_two_runs_racing_to_build_one_engine_both_get_it_and_leave_one_file(engine_checkpoint, tmp_path,
                                                                            monkeypatch, capsys):
    """Still holds with the repairing cache: both answer from the engine, one file under the key, no temporary file."""
    from concurrent.futures import ThreadPoolExecutor

    from tim.predictor import Predictor

    source, data = engine_checkpoint
    folder = tmp_path / "ckpt"
    shutil.copytree(source, folder)
    monkeypatch.setattr(engines, "export_onnx", lambda *_: data)
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda _: Predictor.load(str(folder), engine="auto").engine, range(2)))
    said = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("preparing the fast CPU")]
    assert all(engine is not None for engine in got) and said == []
    assert [p.name.endswith(".onnx") and ".tmp" not in p.name for p in (folder / engines.ENGINE_DIR).iterdir()] == [True]


def test_an_engine_folder_that_is_a_link_out_is_never_written_through(engine_checkpoint, tmp_path, monkeypatch):
    from tim.predictor import Predictor

    source, data = engine_checkpoint
    folder = tmp_path / "ckpt"
    shutil.copytree(source, folder)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / engines.ENGINE_DIR).symlink_to(elsewhere)
    monkeypatch.setattr(engines, "export_onnx", lambda *_: data)
    assert Predictor.load(str(folder), engine="auto").engine is not None
    assert list(elsewhere.iterdir()) == [] and len(list((tmp_path / "tim-cache" / "engines").iterdir())) == 1


# ---------------------------------------------------------------- special files handed to `tim predict`


def test_special_files_are_named_for_what_they_are_and_a_fifo_never_blocks(good, tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    os.mkfifo(odd / "fifo.jpg")
    (odd / "zero.jpg").symlink_to("/dev/zero")
    (odd / "loop.jpg").symlink_to(odd / "loop.jpg")
    (odd / "gone.jpg").symlink_to(odd / "nowhere.jpg")
    (odd / "folder.jpg").mkdir()
    unreadable = save(picture(40, 30), odd / "secret.jpg")
    unreadable.chmod(0)
    files = ["fifo.jpg", "zero.jpg", "loop.jpg", "gone.jpg", "secret.jpg"]
    codes = []
    run = threading.Thread(target=lambda: codes.append(predict(
        [*(odd / f for f in files), "--model", good, "--out", tmp_path / "r.csv"])), daemon=True)
    run.start()
    run.join(60)
    if run.is_alive():  # a reader is blocked on the FIFO: give it end-of-file, then fail
        os.close(os.open(odd / "fifo.jpg", os.O_WRONLY | os.O_NONBLOCK))
        run.join(30)
        pytest.fail("tim predict blocked on a FIFO")
    assert codes == [0]
    errors = {Path(row["path"]).name: row["error"] for row in csv.DictReader(open(tmp_path / "r.csv"))}
    assert "a FIFO (named pipe), not an image file" in errors["fifo.jpg"]
    assert "a character device" in errors["zero.jpg"]
    assert "a loop of symbolic links" in errors["loop.jpg"]
    assert "a symbolic link to" in errors["gone.jpg"] and "does not exist" in errors["gone.jpg"]
    if os.geteuid() != 0:  # root reads every file
        assert "permission denied" in errors["secret.jpg"]
    from tim.images import ImageError, load_rgb

    with pytest.raises(ImageError, match="a folder, not an image file"):
        load_rgb(odd / "folder.jpg")
    (odd / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><image href="http://x/p.png"/></svg>')
    (odd / "scan.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\n1 0 obj<<>>endobj\n")
    for name in ("drawing.svg", "scan.pdf"):  # still refused, never rendered
        with pytest.raises(ImageError, match="not an image file Pillow can read"):
            load_rgb(odd / name)


# ---------------------------------------------------------------- the page in a real browser


def test_a_real_browser_shows_hostile_labels_as_text_and_fetches_nothing(good, tmp_path):
    """The issue's probe, in headless Chromium: a label `<img src="http://127.0.0.1:PORT/pixel.png">` on the page."""
    import http.server

    chromium, chromedriver = os.environ.get("TIM_CHROMIUM", "/usr/bin/chromium"), shutil.which("chromedriver")
    if not (Path(chromium).is_file() and chromedriver):
        pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from processes import free_port
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tim.app import TimApp
    from tim.catalog import ModelCatalog, ModelEntry

    fetched = []

    class Pixel(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            fetched.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    pixel = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pixel)
    threading.Thread(target=pixel.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{pixel.server_address[1]}"
    evil = tmp_path / "<img src=x onerror=alert(1)>"
    shutil.copytree(good, evil)
    labels = [f'<img src="{url}/label.png">', f"![p]({url}/markdown.png)", "<b>bold</b>", "Monet", "Hokusai"]
    edit(label_names=labels)(evil)
    app = TimApp(ModelCatalog([ModelEntry.from_folder(evil, "local")]))
    app.launch("127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True)
    options = Options()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        driver.get(app.demo.local_url)
        about = WebDriverWait(driver, 180).until(
            lambda d: d.find_element(By.ID, "tim-model-info") if "artists:" in d.find_element(
                By.ID, "tim-model-info").text else None)
        assert f'<img src="{url}/label.png">' in about.text and "<b>bold</b>" in about.text  # shown as typed
        assert "<img src=x onerror=alert(1)>" in about.text
        assert driver.execute_script("return document.querySelectorAll('#tim-model-info img, "
                                     "#tim-model-info b, #tim-model-info a').length") == 0
    finally:
        driver.quit()
        app.demo.close()
        pixel.shutdown()
    assert fetched == []  # the browser fetched nothing from the checkpoint's URLs

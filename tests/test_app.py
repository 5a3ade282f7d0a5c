"""The app: its functions directly (batches, bad files, limits, models that fail, validation) and over HTTP."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_helpers import ARTISTS, bad_and_odd_files, make_checkpoint, picture, save
from processes import free_port

import tim.catalog
from tim.app import TimApp, build_parser, create_app
from tim.catalog import ModelCatalog, ModelEntry


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    make_checkpoint(root / "effnet", "test_efficientnet", metrics={"split": "test", "accuracy": 0.8125})
    make_checkpoint(root / "resnet", "test_resnet")
    broken = root / "zz-broken"  # looks like a checkpoint (both files), but the weights are garbage
    make_checkpoint(broken, "test_resnet")
    (broken / "model.safetensors").write_bytes(b"\0" * 64)
    return root


@pytest.fixture(scope="module")
def app(models_dir) -> TimApp:
    return TimApp(ModelCatalog.discover(models_dir, []), max_files=16, max_file_mb=5)


@pytest.fixture
def paintings(tmp_path) -> list[Path]:
    return [save(picture(240, 160, seed=s), tmp_path / f"painting{s}.jpg") for s in range(2)]


def test_a_batch_with_a_corrupt_file_analyses_the_rest(app, paintings, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a JPEG")
    status, results = app.analyze("local:effnet", [paintings[0], corrupt, paintings[1]])
    assert [r.name for r in results] == ["painting0.jpg", "corrupt.jpg", "painting1.jpg"]
    assert results[0].explanation and results[2].explanation and results[1].explanation is None
    assert results[1].error.startswith("corrupt.jpg:") and str(tmp_path) not in results[1].error
    assert "Analysed 2 of 3" in status
    rows = app.table(results)
    assert rows[0][1] in ARTISTS and 0 < rows[0][2] <= 1 and rows[0][3].count(":") == 5 and rows[0][4] == ""
    assert rows[1][1] == "" and "corrupt.jpg" in rows[1][4]


def test_each_bad_file_gets_its_own_message_and_odd_ones_are_analysed(app, tmp_path):
    bad, odd = bad_and_odd_files(tmp_path)
    paths = list(bad.values()) + list(odd.values())
    _, results = app.analyze("local:resnet", paths)
    by_name = {r.name: r for r in results}
    expected = {"empty": "empty", "text": "not an image", "truncated": "broken or truncated",
                "bomb": "pixels", "strip": "strip"}
    for kind, path in bad.items():
        r = by_name[path.name]
        assert r.explanation is None and expected[kind] in r.error, (kind, r.error)
    for kind, path in odd.items():
        assert by_name[path.name].explanation is not None, (kind, by_name[path.name].error)
    # EXIF orientation honoured: stored 200x100 sideways, shown upright 100x200
    assert by_name["rotated.jpg"].explanation.picture.size == (100, 200)
    assert by_name["rotated.jpg"].explanation.overlay.shape == (200, 100, 3)


def test_limits_on_count_and_size_are_enforced_per_file(models_dir, tmp_path):
    app = TimApp(ModelCatalog.discover(models_dir, []), max_files=2, max_file_mb=0.01)
    small = [save(picture(60, 40, seed=s), tmp_path / f"s{s}.png") for s in range(3)]
    big = save(picture(400, 400), tmp_path / "big.png")
    assert big.stat().st_size > 0.01 * 1024 * 1024
    _, results = app.analyze("local:effnet", [small[0], big, small[1], small[2]])
    assert results[0].explanation is not None
    assert results[1].error.startswith("big.png: ") and "over the 0.01 MB limit" in results[1].error
    assert "at most 2 pictures" in results[2].error and "at most 2 pictures" in results[3].error


def test_a_model_that_fails_to_load_says_why_and_the_others_still_work(app, paintings):
    status, results = app.analyze("local:zz-broken", paintings)
    assert results == [] and "could not be loaded" in status and "zz-broken" in status
    assert "could not be loaded" in app.describe("local:zz-broken")
    status, results = app.analyze("local:effnet", paintings)
    assert all(r.explanation is not None for r in results)


def test_an_unexpected_failure_fails_only_its_own_file(tmp_path):
    from tim.images import ImageError

    class Fragile:
        def analyse(self, paths, whole=False, explain=False):
            if any("boom" in p for p in paths):
                raise RuntimeError("kaboom")
            return [ImageError(f"{p}: fine, but refused") for p in paths]

    catalog = ModelCatalog([ModelEntry("local:x", "x", "local")], loader=lambda ref: Fragile())
    files = [save(picture(40, 30), tmp_path / name) for name in ("a.png", "boom.png", "c.png")]
    _, results = TimApp(catalog, batch_size=4).analyze("local:x", files)
    assert [r.error for r in results] == [
        "a.png: fine, but refused", "boom.png: analysis failed (RuntimeError: kaboom)", "c.png: fine, but refused"]


def test_a_rejected_picture_says_it_is_none_of_the_artists_and_lists_the_closest(tmp_path, paintings):
    make_checkpoint(tmp_path / "models" / "rejecting", "test_resnet", rejects_all=True)
    app = TimApp(ModelCatalog.discover(tmp_path / "models", []))
    _, results = app.analyze("local:rejecting", paintings[:1])
    p = results[0].explanation.prediction
    assert not p.known and p.artist in ARTISTS
    text = app._answer_markdown(p, 5)
    assert text.startswith("**Not one of the 5 artists this model knows**") and "closest: " in text
    assert app.table(results)[0][5] == 0 and app.table(results)[0][1] == p.artist


def test_artists_are_shown_as_people_write_them():
    from tim.app import headline
    from tim.predictor import Prediction

    p = Prediction("Peter_Paul_Rubens", 0.8, [("Peter_Paul_Rubens", 0.8), ("Pierre-Auguste_Renoir", 0.1)])
    assert headline(p, 15) == "Peter Paul Rubens"
    assert TimApp._answer_markdown(p, 15).startswith("**Peter Paul Rubens**, 80.0% confidence")
    r = TimApp.table([type("R", (), {"name": "x.jpg", "explanations": [type("E", (), {"prediction": p})()],
                                     "error": None})()])[0]
    assert r[1] == "Peter Paul Rubens" and r[3].startswith("Peter Paul Rubens: 0.800; Pierre-Auguste Renoir")


def test_every_model_answers_each_painting_side_by_side(tmp_path, paintings):
    root = tmp_path / "models"
    make_checkpoint(root / "a-effnet", "test_efficientnet")
    make_checkpoint(root / "b-rejecting", "test_resnet", rejects_all=True)
    make_checkpoint(root / "c-resnet", "test_resnet", seed=3)
    catalog = ModelCatalog([ModelEntry.from_folder(p, "local") for p in sorted(root.iterdir())], max_loaded=1)
    loads = []
    load = catalog._load
    catalog._load = lambda ref: loads.append(ref) or load(ref)
    app = TimApp(catalog)
    status, comparisons = app.analyze_all(paintings)
    assert "with 3 models" in status and [c.name for c in comparisons] == ["painting0.jpg", "painting1.jpg"]
    for c in comparisons:
        assert [model for model, _ in c.answers] == ["a-effnet", "b-rejecting", "c-resnet"]
        assert all(r.explanation is not None and r.explanation.overlay.ndim == 3 for _, r in c.answers)
        assert c.picture is not None
    assert len(loads) == 3 and sum(catalog.is_loaded(k) for k in catalog.entries) == 1  # the LRU bound holds
    rows = app.all_table(comparisons)
    assert len(rows) == 6 and rows[1][:2] == ["painting0.jpg", "b-rejecting"]
    assert rows[1][2] == "Not one of the 5 artists this model knows" and rows[1][5] == 0 and rows[1][3] in ARTISTS
    assert rows[0][2] in ARTISTS and rows[0][5] == 1 and 0 < rows[0][4] <= 1


def test_every_model_view_reports_a_model_that_fails_and_still_shows_the_others(app, paintings):
    status, comparisons = app.analyze_all(paintings[:1])
    answers = dict(comparisons[0].answers)
    assert "Could not load: zz-broken" in status
    assert answers["zz-broken"].explanation is None and "could not be loaded" in answers["zz-broken"].error
    assert answers["effnet"].explanation is not None and answers["resnet"].explanation is not None


def test_only_configured_models_can_be_chosen(models_dir, paintings):
    loaded = []
    catalog = ModelCatalog.discover(models_dir, [])
    catalog._loader = lambda ref: loaded.append(ref)
    app = TimApp(catalog)
    for value in ["../../etc", str(models_dir / "effnet"), "hub:someone/else", "effnet", None, ""]:
        status, results = app.analyze(value, paintings)
        assert results == [] and "unknown model" in status
        assert "unknown model" in app.describe(value)
    assert loaded == []


def test_model_list_order_and_descriptions(models_dir, tmp_path, monkeypatch):
    bundled = tmp_path / "bundled"
    make_checkpoint(bundled / "tim-lite0", "test_efficientnet")
    (bundled / "examples").mkdir()  # not a checkpoint: ignored
    (bundled / "tim-lite0" / "eval_results.json").write_text(json.dumps(
        {"split": "test", "metrics": {"accuracy": {"value": 0.75, "low": 0.71, "high": 0.79}}}))
    monkeypatch.setattr(tim.catalog, "BUNDLED_DIR", bundled)
    monkeypatch.setenv("TIM_MODELS", "someone/tim-convnext, other/model@v2")
    app = create_app(build_parser().parse_args(["--models-dir", str(models_dir), "--model", "third/repo",
                                                "--model", "fourth/repo", "fifth/repo"]))
    keys = list(app.catalog.entries)
    assert keys == ["bundled:tim-lite0", "local:effnet", "local:resnet", "local:zz-broken",
                    "hub:third/repo", "hub:fourth/repo", "hub:fifth/repo", "hub:someone/tim-convnext",
                    "hub:other/model@v2"]
    assert app.catalog.default_key == "bundled:tim-lite0"
    labels = dict((k, v) for v, k in app.catalog.choices())
    assert labels["bundled:tim-lite0"] == "tim-lite0 (bundled) · test_efficientnet · 5 artists · test accuracy 75.0%"
    assert labels["local:effnet"] == "effnet · test_efficientnet · 5 artists · test accuracy 81.2%"
    assert "not measured" in labels["local:resnet"] and labels["hub:other/model@v2"].startswith("other/model@v2 (Hub)")
    assert "71.0% to 79.0%" in app.describe("bundled:tim-lite0")


def test_loaded_models_are_cached_with_a_bound():
    loads = []
    catalog = ModelCatalog([ModelEntry(f"local:{n}", n, "local") for n in "abc"], max_loaded=2,
                           loader=lambda ref: loads.append(ref) or object())
    first = catalog.get("local:a")
    assert catalog.get("local:a") is first and loads == ["a"]
    catalog.get("local:b")
    catalog.get("local:a")  # a is now the most recent
    catalog.get("local:c")  # evicts b
    assert catalog.is_loaded("local:a") and not catalog.is_loaded("local:b")
    catalog.get("local:b")
    assert loads == ["a", "b", "c", "b"]


def test_the_running_app_over_http(app, paintings, tmp_path):
    from gradio_client import Client, handle_file

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n but nothing after")
    port = free_port()
    app.launch("127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    demo = app.demo
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        status, table, about = client.predict(
            "local:effnet", [handle_file(str(p)) for p in (paintings[0], corrupt, paintings[1])], api_name="/analyze")
        rows = table["data"]
        # the columns of every earlier Tim in their places, then painting (1/0) and region (0 = whole picture)
        assert table["headers"] == ["file", "artist", "confidence", "top-5", "error", "known", "painting", "region"]
        assert [r[0] for r in rows] == ["painting0.jpg", "corrupt.png", "painting1.jpg"]
        assert sum(r[4] == "" for r in rows) == 2 and rows[1][4].startswith("corrupt.png:")
        assert all(r[1] in ARTISTS for r in (rows[0], rows[2]))
        assert "Analysed 2 of 3" in status and "effnet" in about
        with pytest.raises(Exception, match="not in the list of choices"):
            client.predict("../etc/passwd", [handle_file(str(paintings[0]))], api_name="/analyze")
        status, table = client.predict([handle_file(str(paintings[0]))], api_name="/analyze_all")
        assert table["headers"] == ["file", "model", "answer", "closest artist", "confidence", "known", "error"]
        names = [r[1] for r in table["data"]]  # the bundled model(s) first, then the models directory
        assert names[-3:] == ["effnet", "resnet", "zz-broken"] and f"with {len(names)} models" in status
    finally:
        demo.close()


# ---------------------------------------------------------------- the Space

REPO = Path(__file__).resolve().parents[1]


def front_matter(readme: Path) -> dict:
    import yaml

    text = readme.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_space_front_matter_matches_the_gradio_we_require():
    from packaging.requirements import Requirement
    from packaging.version import Version

    meta = front_matter(REPO / "space" / "README.md")
    assert meta["sdk"] == "gradio" and (REPO / "space" / meta["app_file"]).is_file()
    assert meta["python_version"] == "3.11" and isinstance(meta["models"], list)
    gradio = next(Requirement(line) for line in (REPO / "requirements.txt").read_text().splitlines()
                  if line.startswith("gradio"))
    assert Version(meta["sdk_version"]) in gradio.specifier
    import gradio as gr

    assert Version(meta["sdk_version"]).major == Version(gr.__version__).major  # the API the app is written for


def test_space_requirements_cover_what_the_app_imports():
    """Every third-party distribution imported by the app's modules is in space/requirements.txt (gradio: the SDK)."""
    import ast
    import importlib.metadata
    import subprocess
    import sys

    code = ("import sys, tim.app, tim.gradcam, tim.hub; "
            "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.split('.')[0] == 'tim'))")
    files = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    imported = set()
    for file in files.stdout.split():
        for node in ast.walk(ast.parse(Path(file).read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m not in ("tim", "__future__")}
    dists = importlib.metadata.packages_distributions()
    needed = {dists[m][0].lower().replace("_", "-") for m in third_party}
    listed = {requirement_name(line) for line in (REPO / "space" / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith(("#", "-"))}
    assert needed - {"gradio", "opencv-python-headless", "opencv-python"} <= listed, needed - listed


def requirement_name(line: str) -> str:
    from packaging.requirements import Requirement

    return Requirement(line.split("#")[0]).name.lower().replace("_", "-")


def test_space_deploy_stages_a_self_contained_app(tmp_path):
    import subprocess
    import sys

    stage = tmp_path / "space"
    subprocess.run([sys.executable, str(REPO / "space" / "deploy.py"), "me/tim", "--model", "someone/tim-model@v1",
                    "--stage-only", str(stage)], check=True, capture_output=True)
    assert front_matter(stage / "README.md")["models"] == ["someone/tim-model"]
    assert (stage / "tim" / "app.py").is_file() and not list(stage.rglob("__pycache__"))
    # the staged app imports the staged package, not the checkout's
    out = subprocess.run([sys.executable, "-c", "import tim; print(tim.__file__)"], cwd=stage,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith(str(stage))


def test_the_default_model_warms_up_in_the_background_while_the_page_is_served(models_dir, paintings, capsys):
    import threading
    import urllib.request

    from tim.predictor import Predictor

    release, loads = threading.Event(), []

    def slow_loader(ref):  # a model whose load takes until the page has been fetched
        loads.append(ref)
        release.wait(60)
        return Predictor.load(ref)

    entries = [ModelEntry.from_folder(models_dir / "effnet", "local")]
    app = TimApp(ModelCatalog(entries, loader=slow_loader), max_files=4, max_file_mb=5)
    thread = app.warm_up()
    port = free_port()
    app.launch("127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200 and thread.is_alive()  # served while the model is still loading
        release.set()
        thread.join(60)
        assert app.catalog.is_loaded("local:effnet") and loads == [str(models_dir / "effnet")]
        assert "the model effnet is ready" in capsys.readouterr().err  # eager in the tests: no engine to build
        status, _ = app.analyze("local:effnet", [paintings[0]])  # a visitor's question finds it loaded
        assert "Analysed 1 of 1" in status
        assert loads == [str(models_dir / "effnet")]
    finally:
        app.demo.close()


def test_the_started_app_names_its_address_and_the_share_option_not_gradios(models_dir):
    """`python app.py` prints where the page is and Tim's --share, never Gradio's "set `share=True` in `launch()`"."""
    import os
    import subprocess
    import sys

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False", "TIM_ENGINE": "eager"}
    process = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port), "--models-dir",
                                str(models_dir), "--no-warm-up"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line.rstrip())
            if "--share" in line or len(lines) > 50:
                break
        said = "\n".join(lines)
        assert f"* Running on local URL:  http://127.0.0.1:{port}" in said, said
        assert "start the app with --share" in said and "share=True" not in said, said
    finally:
        process.terminate()
        process.wait(30)

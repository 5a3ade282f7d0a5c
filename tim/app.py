"""The Tim web app: pick a model, upload paintings, see who painted them and where the model looked.

`TimApp` holds the logic (model catalog, upload limits, analysing a batch) as
plain methods that tests call directly; `TimApp.build()` lays it out as a
gr.Blocks page; `main()` is the command line behind `python app.py` and the Space.

Every file of a batch gets its own result or its own message: one corrupt,
empty, oversized or unreadable upload never stops the others. The model list
is fixed at start-up (bundled, then --models-dir, then --model / TIM_MODELS),
and the dropdown's value is looked up in it, never used as a path or repo id.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from PIL import Image

from tim.catalog import ModelCatalog
from tim.examples import example_images
from tim.helpformat import HelpFormatter
from tim.markup import markdown_text
from tim.plots import display_name
from tim.predictor import Explanation, Prediction

MB = 1024 * 1024
TABLE_HEADERS = ["file", "artist", "confidence", "top-5", "error", "known", "painting", "region"]
NOT_A_PAINTING = "This doesn't look like a painting"
ALL_HEADERS = ["file", "model", "answer", "closest artist", "confidence", "known", "error"]
INTRO = """# Tim: who painted it?
Upload photos of paintings (several at once), pick a model and press **Analyze**. Tim finds the paintings in each
picture (outlined and numbered on it; a scan or a tight crop is used whole), straightens each one and shows the
most likely artist, its calibrated confidence, the top five, and a Grad-CAM heat map of the regions that drove the
guess. When a painting looks like none of the artists the model knows, Tim says so and lists the closest ones as
such; when a picture doesn't look like a painting at all, it says that. **Analyze with every model** shows each model's answer side by side.
Everything runs on this machine."""


@dataclass
class FileResult:
    """One uploaded file: an explanation per painting found in it (largest first; one when used whole), or the
    message that says why it could not be analysed."""

    name: str
    explanations: list[Explanation] = field(default_factory=list)
    error: str | None = None

    @property
    def explanation(self) -> Explanation | None:
        """The first (largest) painting's explanation; None when the file could not be analysed."""
        return self.explanations[0] if self.explanations else None

    @property
    def picture(self):
        """The user's picture as shown: with the paintings found outlined, or as it is when used whole."""
        e = self.explanation
        return None if e is None else (e.outlined if e.outlined is not None else e.picture)


@dataclass
class Comparison:
    """One uploaded file analysed by every model: (model name, FileResult) per model, in catalog order."""

    name: str
    answers: list[tuple[str, FileResult]]

    @property
    def picture(self):
        return next((r.picture for _, r in self.answers if r.explanation is not None), None)


def _progress_noop(*_args, **_kwargs) -> None:
    pass


def headline(p: Prediction, artists: int) -> str:
    """What the model says, as a visitor reads it: the artist, that it is none of the ones it knows, or that the
    picture doesn't look like a painting."""
    if not p.painting:
        return NOT_A_PAINTING
    if not p.known:
        return f"Not one of the {artists} artists this model knows"
    return display_name(p.artist)


def closest_text(p: Prediction, n: int = 3, name=display_name) -> str:
    return "closest: " + ", ".join(f"{name(a)} ({c:.0%})" for a, c in p.top[:n])


def _blank_jpeg(side: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (128, 128, 128)).save(buffer, "JPEG")
    return buffer.getvalue()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # gone or unreadable: decoding will say so for this file


_md = markdown_text  # every name, label and message from a checkpoint or an upload goes through it

class TimApp:
    """The app's behaviour, independent of the page layout."""

    def __init__(self, catalog: ModelCatalog, max_files: int = 16, max_file_mb: float = 20.0, batch_size: int = 4,
                 examples: list[Path] | None = None):
        self.catalog = catalog
        self.max_files = max_files
        self.max_file_mb = max_file_mb
        self.batch_size = batch_size
        self.examples = examples if examples is not None else []

    # ------------------------------------------------------------ logic

    def describe(self, key: str | None) -> str:
        """Markdown about the selected model, including why it failed to load if it did."""
        if not self.catalog.entries:
            return ("**No model available.** Put a checkpoint folder in the models directory, or name a "
                    "Hub repo with `--model user/name` or `TIM_MODELS`.")
        try:
            entry = self.catalog.entry(key)
        except KeyError as e:
            return f"⚠️ {_md(e.args[0])}"
        text = entry.details()
        if key in self.catalog.errors:
            text += f"\n\n⚠️ **This model could not be loaded:** {_md(self.catalog.errors[key])}"
        return text

    def analyze(self, key: str | None, paths: list[str] | None,
                progress=_progress_noop, whole: bool = False) -> tuple[str, list[FileResult]]:
        """(status Markdown, a FileResult per file in upload order) for the model `key` and the uploaded files.

        whole: answer each picture whole instead of looking for the paintings in it."""
        try:
            self.catalog.entry(key)
        except KeyError as e:
            return f"⚠️ {_md(e.args[0])}.", []
        paths = [str(p) for p in (paths or [])]
        if not paths:
            return "Upload one or more pictures first.", []
        results = [FileResult(Path(p).name) for p in paths]
        todo: list[int] = []
        for i, path in enumerate(paths):
            if i >= self.max_files:
                results[i].error = f"{results[i].name}: not analysed; at most {self.max_files} pictures per batch."
            elif _size(path) > self.max_file_mb * MB:
                results[i].error = (f"{results[i].name}: {_size(path) / MB:.1f} MB is over the "
                                    f"{self.max_file_mb:g} MB limit per file; downscale it.")
            else:
                todo.append(i)

        if todo:
            progress(0, desc="Loading model")
            try:
                predictor = self.catalog.get(key)
            except Exception:  # noqa: BLE001 - the reason is in catalog.errors and shown to the user
                return (f"⚠️ **{_md(self.catalog.entry(key).name)} could not be loaded:** "
                        f"{_md(self.catalog.errors[key])}\n\n"
                        "The other models still work: choose another one."), []
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                span = f"{start + 1}" if len(chunk) == 1 else f"{start + 1} to {start + len(chunk)}"
                progress((start, len(todo)), desc=f"Analysing {span} of {len(todo)}", unit="pictures")
                try:
                    outcomes = predictor.analyse([paths[i] for i in chunk], whole=whole, explain=True)
                except Exception:  # noqa: BLE001 - unexpected: retry one by one, so only the culprit fails
                    outcomes = [self._explain_one(predictor, paths[i], whole) for i in chunk]
                for i, outcome in zip(chunk, outcomes):
                    if isinstance(outcome, list):
                        results[i].explanations = outcome
                    else:  # ImageError names the server-side temp path; the user knows the file by its name
                        results[i].error = str(outcome).replace(paths[i], results[i].name)
            progress((len(todo), len(todo)), desc="Done", unit="pictures")

        good = sum(r.explanation is not None for r in results)
        status = f"Analysed {good} of {len(results)} pictures with **{_md(self.catalog.entry(key).name)}**."
        if good < len(results):
            status += f" {len(results) - good} could not be analysed (see below)."
        return status, results

    def analyze_all(self, paths: list[str] | None, progress=_progress_noop,
                    whole: bool = False) -> tuple[str, list[Comparison]]:
        """Every offered model on the same files: (status Markdown, a Comparison per file in upload order).

        Models are loaded one after the other through the catalog, so at most its `max_loaded` stay in memory.
        """
        keys = list(self.catalog.entries)
        if not keys:
            return self.describe(None), []
        paths = [str(p) for p in (paths or [])]
        if not paths:
            return "Upload one or more pictures first.", []
        comparisons = [Comparison(Path(p).name, []) for p in paths]
        failed = []
        for n, key in enumerate(keys):
            progress((n, len(keys)), desc=f"Model {n + 1} of {len(keys)}: {self.catalog.entry(key).name}",
                     unit="models")
            status, results = self.analyze(key, paths, whole=whole)
            if not results:  # the model could not be loaded: one message per file, the others carry on
                failed.append(self.catalog.entry(key).name)
                reason = self.catalog.errors.get(key, status)
                results = [FileResult(c.name, error=f"model could not be loaded: {reason}") for c in comparisons]
            for comparison, result in zip(comparisons, results):
                comparison.answers.append((self.catalog.entry(key).name, result))
        progress((len(keys), len(keys)), desc="Done", unit="models")
        status = f"Analysed {len(paths)} picture{'s' * (len(paths) > 1)} with {len(keys)} models."
        if failed:
            status += f" ⚠️ Could not load: {_md(', '.join(failed))}."
        return status, comparisons

    def all_table(self, comparisons: list[Comparison]) -> list[list]:
        """One row per file (per painting found in it) and model: file, model, answer, closest artist, confidence,
        known, error."""
        rows = []
        for c in comparisons:
            for model, r in c.answers:
                if r.explanation is None:
                    rows.append([c.name, model, "", "", None, None, r.error or ""])
                    continue
                for e in r.explanations:
                    p = e.prediction
                    name = f"{c.name} (painting {p.region})" if p.region else c.name
                    rows.append([name, model, headline(p, self._artists(model)), display_name(p.artist),
                                 round(p.confidence, 4), int(p.known), ""])
        return rows

    def _artists(self, model_name: str) -> int:
        entry = next((e for e in self.catalog.entries.values() if e.name == model_name), None)
        return len(((entry.config if entry else None) or {}).get("label_names") or []) or 0

    @staticmethod
    def _explain_one(predictor, path: str, whole: bool = False):
        try:
            return predictor.analyse([path], whole=whole, explain=True)[0]
        except Exception as e:  # noqa: BLE001 - reported as this file's message
            return RuntimeError(f"{path}: analysis failed ({type(e).__name__}: {e})")

    @staticmethod
    def table(results: list[FileResult]) -> list[list]:
        """One row per painting found (one per file used whole): file, artist (the most likely known one),
        confidence, top-5, error, known (1/0), painting (1/0), region (0 = the whole picture, 1, 2, ...)."""
        rows = []
        for r in results:
            if not r.explanations:
                rows.append([r.name, "", None, "", r.error or "", None, None, None])
                continue
            for e in r.explanations:
                p = e.prediction
                top = "; ".join(f"{display_name(a)}: {c:.3f}" for a, c in p.top)
                rows.append([r.name, display_name(p.artist), round(p.confidence, 4), top, "", int(p.known),
                             int(p.painting), p.region])
        return rows

    # ------------------------------------------------------------ page

    def _on_analyze(self, key, files, whole=False, progress=gr.Progress()):
        status, results = self.analyze(key, files, progress, whole=bool(whole))
        return status, self.table(results), [("one", results, key)], self.describe(key)

    def _on_analyze_all(self, files, whole=False, progress=gr.Progress()):
        status, comparisons = self.analyze_all(files, progress, whole=bool(whole))
        return status, self.all_table(comparisons), [("all", comparisons, None)]

    def build(self) -> gr.Blocks:
        """The gr.Blocks page: model and uploads on the left, one row per picture on the right."""
        with gr.Blocks(title="Tim: who painted it?") as demo:
            gr.Markdown(INTRO)
            with gr.Row():
                with gr.Column(scale=1, min_width=320):
                    model = gr.Dropdown(self.catalog.choices(), value=self.catalog.default_key, label="Model",
                                        info="architecture · artists · test accuracy", elem_id="tim-model")
                    about = gr.Markdown(self.describe(self.catalog.default_key), elem_id="tim-model-info")
                    files = gr.File(file_count="multiple", type="filepath", elem_id="tim-files",
                                    label=f"Paintings (up to {self.max_files}, {self.max_file_mb:g} MB each)")
                    whole = gr.Checkbox(False, label="Use the whole picture", elem_id="tim-whole",
                                        info="answer each picture as it is, without looking for the paintings in it")
                    analyze = gr.Button("Analyze", variant="primary", elem_id="tim-analyze")
                    analyze_all = gr.Button("Analyze with every model", elem_id="tim-analyze-all")
                    if self.examples:
                        gr.Examples([[[str(p) for p in self.examples]]] + [[[str(p)]] for p in self.examples],
                                    inputs=[files], label="Examples: click one, then Analyze",
                                    example_labels=["all examples"] + [p.stem for p in self.examples])
                with gr.Column(scale=2):
                    status = gr.Markdown("Results appear here: choose pictures, then press **Analyze**.",
                                         elem_id="tim-status", min_height=48)
                    results = gr.State([], time_to_live=900)  # pictures are big: a session keeps them 15 min

                    @gr.render(inputs=results)
                    def show(items: list):
                        for kind, payload, key in items:  # one ("one" | "all", results, model key) at a time
                            if kind == "one":
                                artists = len((self.catalog.entry(key).config or {}).get("label_names") or [])
                                for n, r in enumerate(payload, 1):
                                    self._result_row(n, r, artists)
                            else:
                                for n, c in enumerate(payload, 1):
                                    self._comparison_rows(n, c)

                    with gr.Accordion("Table (also returned by the API)", open=False):
                        table = gr.Dataframe(headers=TABLE_HEADERS,
                                             datatype=["str", "str", "number", "str", "str", "number", "number",
                                                       "number"],
                                             interactive=False, wrap=True, elem_id="tim-table")
                    with gr.Accordion("Every model: table (also returned by the API)", open=False):
                        all_table = gr.Dataframe(headers=ALL_HEADERS, datatype=["str", "str", "str", "str", "number",
                                                                                "number", "str"],
                                                 interactive=False, wrap=True, elem_id="tim-all-table")
            model.change(self.describe, inputs=model, outputs=about, api_visibility="private")
            analyze.click(self._on_analyze, inputs=[model, files, whole], outputs=[status, table, results, about],
                          api_name="analyze", show_progress_on=[status])
            analyze_all.click(self._on_analyze_all, inputs=[files, whole], outputs=[status, all_table, results],
                              api_name="analyze_all", show_progress_on=[status])
        return demo

    @staticmethod
    def _answer_markdown(p: Prediction, artists: int) -> str:
        if not p.painting:
            return f"**{NOT_A_PAINTING}**\n\n{closest_text(p, name=lambda a: _md(display_name(a)))}, if it is one"
        if p.known:
            return f"**{_md(display_name(p.artist))}**, {p.confidence:.1%} confidence"
        return f"**{_md(headline(p, artists))}**\n\n{closest_text(p, name=lambda a: _md(display_name(a)))}"

    @staticmethod
    def _answer_class(p: Prediction) -> str:
        return "tim-not-painting" if not p.painting else ("tim-prediction" if p.known else "tim-unknown")

    def _result_row(self, n: int, r: FileResult, artists: int) -> None:
        """A file: its answer, picture and Grad-CAM; a located photo: the photo with the paintings outlined, then
        each painting, straightened, with its answer and Grad-CAM."""
        if r.explanation is None:
            gr.Markdown(f"#### {n}. {_md(r.name)}\n⚠️ {_md(r.error or '')}", elem_classes=["tim-error"])
            return
        located = r.explanation.outlined is not None
        if located:
            with gr.Row(equal_height=False, elem_classes=["tim-photo"]):
                found = len(r.explanations)
                gr.Markdown(f"#### {n}. {_md(r.name)}\n{found} painting{'s' * (found > 1)} found in the picture",
                            elem_classes=["tim-found"])
                gr.Image(r.picture, label="Your picture, paintings outlined", interactive=False, height=300,
                         scale=2, elem_classes=["tim-original"], buttons=["fullscreen"])
        for e in r.explanations:
            p = e.prediction
            title = (f"#### {n}.{p.region} painting {p.region} of {_md(r.name)}" if located
                     else f"#### {n}. {_md(r.name)}")
            with gr.Row(equal_height=False, elem_classes=["tim-result"]):
                with gr.Column(scale=1, min_width=220):
                    gr.Markdown(f"{title}\n{self._answer_markdown(p, artists)}", elem_classes=[self._answer_class(p)])
                    gr.Label({display_name(a): c for a, c in p.top}, num_top_classes=len(p.top),
                             label="Top 5" if p.known else "Closest artists", show_heading=False)
                gr.Image(e.picture, label="Painting, straightened" if located else "Original", interactive=False,
                         height=300, scale=1, elem_classes=["tim-painting" if located else "tim-original"],
                         buttons=["fullscreen"])
                gr.Image(e.overlay, label="Grad-CAM", interactive=False, height=300, scale=1,
                         elem_classes=["tim-cam"], buttons=["fullscreen"])

    def _comparison_rows(self, n: int, c: Comparison) -> None:
        """A painting, then one row per model: its answer, calibrated confidence and Grad-CAM."""
        with gr.Row(equal_height=False, elem_classes=["tim-comparison"]):
            gr.Markdown(f"#### {n}. {_md(c.name)}")
            if c.picture is not None:
                gr.Image(c.picture, label="Original", interactive=False, height=200, elem_classes=["tim-original"],
                         buttons=["fullscreen"])
        for model, r in c.answers:
            if r.explanation is None:
                with gr.Row(equal_height=False, elem_classes=["tim-model-answer"]):
                    gr.Markdown(f"**{_md(model)}**: ⚠️ {_md(r.error or '')}", elem_classes=["tim-error"])
                continue
            for e in r.explanations:
                which = f" (painting {e.prediction.region})" if e.prediction.region else ""
                with gr.Row(equal_height=False, elem_classes=["tim-model-answer"]):
                    gr.Markdown(f"**{_md(model)}**{which}\n\n"
                                f"{self._answer_markdown(e.prediction, self._artists(model))}",
                                elem_classes=["tim-prediction"])
                    gr.Image(e.overlay, label=f"Grad-CAM ({model})", interactive=False, height=200,
                             elem_classes=["tim-cam"], buttons=["fullscreen"])

    def warm_up(self) -> threading.Thread | None:
        """Load the default model and build its engine in a background thread, so the page is served meanwhile
        and the first visitor's answer does not wait for it; a visitor who asks sooner waits for the same build
        (the catalog's and the Predictor's locks), never for a second one. A model that fails to load is
        reported by the catalog when it is asked for, as without the warm-up."""
        key = self.catalog.default_key
        if key is None:
            return None

        def build() -> None:
            try:
                started = time.perf_counter()
                predictor = self.catalog.get(key)
                engine = getattr(predictor, "engine", None)  # built here, on the first use
                if hasattr(predictor, "explain"):  # and one picture through what a visitor's question runs
                    predictor.explain([_blank_jpeg()])
                what = "the fast CPU engine for" if engine is not None else "the model"
                print(f"{what} {self.catalog.entry(key).name} is ready ({time.perf_counter() - started:.1f} s)",
                      file=sys.stderr, flush=True)
            except Exception:  # noqa: BLE001 - the catalog keeps the reason; the visitor sees it on use
                pass

        thread = threading.Thread(target=build, name="tim-warm-up", daemon=True)
        thread.start()
        return thread

    def launch(self, host: str | None = None, port: int | None = None, share: bool = False, **kwargs):
        """Queue (one analysis at a time: the CPU is the bottleneck) and serve."""
        self.demo = demo = self.build()
        demo.queue(default_concurrency_limit=1, max_size=64)
        return demo.launch(server_name=host, server_port=port, share=share,
                           max_file_size=int(self.max_file_mb * MB), **kwargs)


# ------------------------------------------------------------ command line


def hub_refs_from_env() -> list[str]:
    return [r.strip() for r in os.environ.get("TIM_MODELS", "").split(",") if r.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="app.py", description="Tim's web app: artist, confidence and Grad-CAM.",
                                formatter_class=HelpFormatter)
    p.add_argument("--host", default=None, help="interface to listen on (default 127.0.0.1, or GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=None,
                   help="port (default 7860 or the next free one, or GRADIO_SERVER_PORT)")
    p.add_argument("--models-dir", default="models", help="folder of checkpoint folders to offer (default ./models)")
    p.add_argument("--model", dest="models", action="extend", nargs="+", default=[], metavar="REF",
                   help="Hub repo user/name[@revision] or checkpoint folder to offer (repeatable; also TIM_MODELS)")
    p.add_argument("--max-files", type=int, default=os.environ.get("TIM_MAX_FILES", "16"),
                   help="pictures per batch (default 16, or TIM_MAX_FILES)")
    p.add_argument("--max-file-mb", type=float, default=os.environ.get("TIM_MAX_FILE_MB", "20"),
                   help="size limit per file in MB (default 20, or TIM_MAX_FILE_MB)")
    p.add_argument("--max-loaded", type=int, default=2, help="models kept in memory at once (default 2)")
    p.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")
    p.add_argument("--no-warm-up", dest="warm_up", action="store_false",
                   help="load the default model on the first request instead of in the background at start-up")
    return p


def create_app(args: argparse.Namespace) -> TimApp:
    catalog = ModelCatalog.discover(args.models_dir, list(args.models) + hub_refs_from_env(), args.max_loaded)
    return TimApp(catalog, args.max_files, args.max_file_mb, examples=example_images())


def check_args(args: argparse.Namespace) -> None:
    """UserError for a limit below 1 or a named model folder that does not exist, before anything loads."""
    from tim.errors import UserError
    from tim.hub import is_hub_ref

    for flag, value in (("--max-files", args.max_files), ("--max-file-mb", args.max_file_mb),
                        ("--max-loaded", args.max_loaded)):
        if value <= 0:
            raise UserError(f"{flag} {value}: must be more than 0.")
    if args.models_dir != "models" and not Path(args.models_dir).is_dir():
        raise UserError(f"--models-dir {args.models_dir}: no such folder.")
    for ref in args.models:
        if not is_hub_ref(ref) and not Path(ref).expanduser().is_dir():
            raise UserError(f"--model {ref}: no such checkpoint folder, and not a Hub repo id (user/name).")


def main(argv: list[str] | None = None) -> int:
    """Serve until stopped; exit 1 with one `error:` line for a user error (tim.errors)."""
    from tim.errors import run_command

    return run_command(serve, build_parser().parse_args(argv))


def serve(args: argparse.Namespace) -> None:
    check_args(args)
    app = create_app(args)
    if not app.catalog.entries:
        print("warning: no models found; see --models-dir and --model", flush=True)
    if args.warm_up:
        app.warm_up()
    # Gradio's own start-up lines would end "set `share=True` in `launch()`", which a user of Tim cannot:
    # quiet, and Tim says where the page is and names its --share option (Gradio 6 has no switch for that line alone)
    app.launch(args.host, args.port, args.share, quiet=True, prevent_thread_lock=True)
    print(f"* Running on local URL:  {app.demo.local_url}", flush=True)
    if app.demo.share_url:
        print(f"* Running on public URL: {app.demo.share_url} (temporary)", flush=True)
    elif not args.share:
        print("* To also open a temporary public link, start the app with --share.", flush=True)
    app.demo.block_thread()

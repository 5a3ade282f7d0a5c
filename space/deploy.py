"""Deploy Tim as a Hugging Face Space: stage space/ plus a copy of the `tim` package, then upload it.

    python space/deploy.py USER/SPACE [--model USER/REPO ...] [--private]
    python space/deploy.py USER/SPACE --model USER/REPO --stage-only /tmp/tim-space   # inspect, no upload

A Space installs only what its requirements.txt names, from a build step that sees
no other file, so it cannot `pip install ..` from a checkout. Instead the package
source (with the bundled model and examples) is copied next to space/app.py at
deploy time; the repository keeps one copy of the code. The --model repos go into
the README's `models:` list (linking the Space to them on the Hub) and into the
Space variable TIM_MODELS, which tim.app reads. Log in first (`hf auth login`, or HF_TOKEN).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

SPACE = Path(__file__).resolve().parent
REPO = SPACE.parent
sys.path.insert(0, str(REPO))  # this checkout's tim, the one that gets deployed

from tim.atomic import replace_folder  # noqa: E402
from tim.errors import UserError, run_command  # noqa: E402

SPACE_FILES = ("README.md", "app.py", "requirements.txt")
MARKER = ".tim-space"  # marks a folder staged by this script, which a later --stage-only may replace


def stage(folder: Path, models: list[str]) -> Path:
    """Write the Space's files into `folder`: space/ files, tim/ (no caches), README models list.

    They are written beside `folder` first and swapped in whole. `folder` may be new, empty, or
    staged before; any other existing folder is refused, so nothing of the user's is deleted.
    """
    folder = Path(folder)
    if folder.exists() and not (folder / MARKER).is_file() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"--stage-only {folder}: it already exists and was not staged by this script; "
                        "name a new or empty folder (a folder staged before is replaced).")
    if len(set(models)) != len(models):
        raise UserError(f"--model: the same model is named twice ({', '.join(models)}).")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.stage{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        for name in SPACE_FILES:
            shutil.copy2(SPACE / name, staging / name)
        shutil.copytree(REPO / "tim", staging / "tim",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.tmp*", ".*.tmp*", ".tim-engine"))
        if models:
            readme = (staging / "README.md").read_text()
            listed = "models:\n" + "".join(f"  - {m.split('@')[0]}\n" for m in models)
            readme, n = re.subn(r"^models:.*\n(?:  - .*\n)*", listed, readme, count=1, flags=re.M)
            if n != 1:
                raise UserError("space/README.md has no `models:` line in its front matter")
            (staging / "README.md").write_text(readme)
        (staging / MARKER).write_text("staged by space/deploy.py; a later --stage-only may replace this folder\n")
        replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    """Exit 0 once staged or deployed; 1 with one `error:` line for a user error (tim.errors)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("space", help="the Space repo id, user/name")
    p.add_argument("--model", dest="models", action="append", default=[],
                   help="Hub model repo the Space offers, user/name[@revision] (repeatable)")
    p.add_argument("--private", action="store_true", help="create the Space as private")
    p.add_argument("--stage-only", metavar="DIR", help="only write the Space's files to DIR; no upload")
    return run_command(deploy, p.parse_args(argv))


def deploy(args: argparse.Namespace) -> None:
    if args.stage_only:
        print(f"staged in {stage(Path(args.stage_only), args.models)}")
        return
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    with tempfile.TemporaryDirectory() as tmp:
        folder = stage(Path(tmp) / "space", args.models)
        try:
            api.create_repo(args.space, repo_type="space", space_sdk="gradio", private=args.private, exist_ok=True)
            if args.models:
                api.add_space_variable(args.space, "TIM_MODELS", ",".join(args.models),
                                       description="Hub models offered after the bundled one (tim.app)")
            # delete_patterns: files of an older tim/ that this version no longer has are removed
            api.upload_folder(repo_id=args.space, repo_type="space", folder_path=folder,
                              ignore_patterns=[MARKER], delete_patterns=["tim/**"], commit_message="Deploy Tim")
        except (HfHubHTTPError, OSError, ValueError) as e:  # network, auth, offline mode, a bad Space id
            raise UserError(f"deploying to the Space {args.space} failed: {type(e).__name__}: {str(e).rstrip('.')}. Log in "
                            "(`hf auth login` or HF_TOKEN) with a write token, check the Space id, and retry.") from None
    print(f"deployed: https://huggingface.co/spaces/{args.space}")


if __name__ == "__main__":
    sys.exit(main())

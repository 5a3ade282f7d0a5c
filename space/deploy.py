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
import re
import shutil
import tempfile
from pathlib import Path

SPACE = Path(__file__).resolve().parent
REPO = SPACE.parent
SPACE_FILES = ("README.md", "app.py", "requirements.txt")


def stage(folder: Path, models: list[str]) -> Path:
    """Write the Space's files into `folder`: space/ files, tim/ (no caches), README models list."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in SPACE_FILES:
        shutil.copy2(SPACE / name, folder / name)
    shutil.rmtree(folder / "tim", ignore_errors=True)
    shutil.copytree(REPO / "tim", folder / "tim", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.tmp*", ".tim-engine"))
    if models:
        readme = (folder / "README.md").read_text()
        listed = "models:\n" + "".join(f"  - {m.split('@')[0]}\n" for m in models)
        readme, n = re.subn(r"^models:.*\n(?:  - .*\n)*", listed, readme, count=1, flags=re.M)
        if n != 1:
            raise SystemExit("space/README.md has no `models:` line in its front matter")
        (folder / "README.md").write_text(readme)
    return folder


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("space", help="the Space repo id, user/name")
    p.add_argument("--model", dest="models", action="append", default=[],
                   help="Hub model repo the Space offers, user/name[@revision] (repeatable)")
    p.add_argument("--private", action="store_true", help="create the Space as private")
    p.add_argument("--stage-only", metavar="DIR", help="only write the Space's files to DIR; no upload")
    args = p.parse_args(argv)

    if args.stage_only:
        print(f"staged in {stage(Path(args.stage_only), args.models)}")
        return
    from huggingface_hub import HfApi

    api = HfApi()
    with tempfile.TemporaryDirectory() as tmp:
        folder = stage(Path(tmp) / "space", args.models)
        api.create_repo(args.space, repo_type="space", space_sdk="gradio", private=args.private, exist_ok=True)
        if args.models:
            api.add_space_variable(args.space, "TIM_MODELS", ",".join(args.models),
                                   description="Hub models offered after the bundled one (tim.app)")
        # delete_patterns: files of an older tim/ that this version no longer has are removed
        api.upload_folder(repo_id=args.space, repo_type="space", folder_path=folder,
                          delete_patterns=["tim/**"], commit_message="Deploy Tim")
    print(f"deployed: https://huggingface.co/spaces/{args.space}")


if __name__ == "__main__":
    main()

"""The Hugging Face Space: the same `tim.app` as `python app.py`, configured by the TIM_MODELS variable.

space/deploy.py uploads this folder with the `tim` package copied next to this file,
so the Space imports exactly the repository's code (nothing is duplicated in the repo).
Run from a checkout (`python space/app.py`) it uses the repository's `tim` instead.
"""
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
for root in (here, here.parent):  # the Space (tim/ copied here), or a checkout (tim/ one level up)
    if (root / "tim" / "app.py").is_file():
        sys.path.insert(0, str(root))
        break

from tim.app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())  # models: bundled + TIM_MODELS; host and port from GRADIO_SERVER_NAME/PORT, set by Spaces

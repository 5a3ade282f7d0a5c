"""Tim's web app. `python app.py [--host H] [--port P] [--models-dir DIR] [--model REF ...] [--share]`

All behaviour lives in tim/app.py; the Hugging Face Space runs the same code (space/app.py).
"""
import sys

from tim.app import main

if __name__ == "__main__":
    sys.exit(main())

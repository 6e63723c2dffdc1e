"""Compare segzoo's trained models on your own photo: ``python app.py`` (``--help`` for options).

Also the entry point of the Hugging Face Space (see the front matter of README.md).
"""

from pathlib import Path

from segzoo.app import main

if __name__ == "__main__":
    main(root=Path(__file__).resolve().parent)

"""The Gradio app (``python app.py``): compare every trained model on your own photo.

* :mod:`segzoo.app.catalog` - which checkpoints exist, and a cache of loaded models
* :mod:`segzoo.app.compare` - run the models on one photo; overlays, disagreement, scores
* :mod:`segzoo.app.tables` and :mod:`segzoo.app.figures` - leaderboard and training curves
* :mod:`segzoo.app.context` - what the tabs share; :mod:`segzoo.app.store` - the latest comparisons
* :mod:`segzoo.app.tabs` - one module per tab: its builder and its handlers (plain methods)
* :mod:`segzoo.app.ui` - the Gradio page; :mod:`segzoo.app.server` - command line and launch
"""

from segzoo.app.server import create_app, launch, main, parse_args

__all__ = ["create_app", "launch", "main", "parse_args"]

"""One module per tab of the page, each with its builder and its handlers' class:

* :mod:`segzoo.app.tabs.compare` - ``build_compare_tab``, ``CompareHandlers``
* :mod:`segzoo.app.tabs.leaderboard` - ``build_leaderboard_tab``, ``LeaderboardHandlers``
* :mod:`segzoo.app.tabs.curves` - ``build_curves_tab``, ``CurvesHandlers``
"""

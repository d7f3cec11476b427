"""The rule card: an interpretable, structural model of the trader's policy (issue 21).

* :mod:`workbench.rules.terms`: the interpretable terms per market and step, with draws of the unseen seconds.
* :mod:`workbench.rules.model`: the zero-inflated ordered logit with sizes, its maximum-likelihood fit.
* :mod:`workbench.rules.search`: change points by profile likelihood, model choice, bootstrap over markets.
* :mod:`workbench.rules.card`: the card (table and sentences), predictions, recovery against a known policy.
"""

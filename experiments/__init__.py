"""The experiments behind docs/DISCUSSION.md and the model card's levers: the training arms (``ablate``), the
measurements and the page's tables and figures (``discussion``), robustness to corruptions (``robustness``, drawn by
``robustness_figure``), and the arithmetic of results over seeds (``tables``). They use the model (segformer), the
task and the training pipeline (train); nothing imports them."""

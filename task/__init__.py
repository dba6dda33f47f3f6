"""The 4-class task, apart from how a network is trained for it: the one class table (names, palette, partial labels,
the mapping of every source), the dataset-level metrics, and the training curves. The page (app.py, demo/) and
the training pipeline (train/) both read it; it imports only segformer."""

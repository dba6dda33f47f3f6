"""What the app computes, apart from the page, one module per subject.

``checkpoints`` (loading a checkpoint, also from ``hf://``), ``segment`` (a photo through ``segformer.predict``,
its class shares, its display size), ``camera`` (a camera's frames segmented as they stream in, one at a
time, at a smaller working size), ``ground_truth`` (the bundled validation pairs against their labels: scores
and pictures), ``curves`` (what the Training curves tab says of a checkpoint's history), ``attention`` (where a
clicked point attends), ``docs`` (a Markdown file of the repository with its figures as the page serves them,
and its contents); and what the API is given: ``arguments`` (each argument checked), ``uploads`` (only files of
gradio's upload cache), ``photo`` (an image decoded at a bounded size),
``views`` (the opacity slider's pictures, bounded and shared by all visitors). Nothing here imports gradio: app.py
turns InputError, ArgumentError, UploadRefused, NoUpload and CheckpointError into messages on the page or at start.
"""

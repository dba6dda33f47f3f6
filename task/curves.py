"""Training curves: loss and mean IoU (and per-class IoU) per epoch, from a checkpoint's history."""

from pathlib import Path

from matplotlib.figure import Figure

from segformer.checkpoint import atomic_write


def history_figure(history: list[dict]) -> Figure:
    """Two panels: train/val loss, and val mIoU with each class's IoU, against the epoch."""
    epochs = [h["epoch"] for h in history]
    # A Figure of its own (no pyplot): no global backend or figure registry is touched, so drawing is safe anywhere.
    fig = Figure(figsize=(11, 4), layout="constrained")
    loss_ax, iou_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], marker="o", label="val loss")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    loss_ax.legend()
    iou_ax.plot(epochs, [h["val_miou"] for h in history], marker="o", linewidth=2.5, color="black", label="val mIoU")
    names = list(history[0]["val_per_class_iou"]) if history else []
    for name in names:
        iou_ax.plot(epochs, [h["val_per_class_iou"][name] for h in history], linestyle="--", label=name)
    iou_ax.set(xlabel="epoch", ylabel="IoU", ylim=(0, 1), title="Validation IoU")
    iou_ax.legend(fontsize="small")
    for ax in (loss_ax, iou_ax):
        ax.grid(alpha=0.3)
    return fig


def save_curves(history: list[dict], path: Path) -> None:
    """Write the curves as a PNG, atomically."""
    fig = history_figure(history)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))

"""Segmentation datasets in the shared folder layout and their joint image/mask transforms; and the training images
alone, for the hint stage (train.hints), with theirs.

Layout read by SegmentationFolder (the shared datasets and the output of ``train.prepare``)::

    root/classes.txt                   "ID NAME" per line
    root/images/<split>/<stem>.jpg     (or .jpeg/.png)
    root/labels/<split>/<stem>.png     8-bit class ids, same size as the image
    root/teachers/<teacher>/<split>/<stem>.png   optional: teacher targets (train.teach, train.teacher_targets)

TrainImages reads only ``root/images/train``.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from task.classes import IGNORE_INDEX, SOURCE_TABLES, lookup_table, read_classes_txt
from train.prepare import image_files
from train.teacher_targets import SoftTarget, load_target

#: (image, mask) or, with teacher targets, (image, mask, target); (image,) from TrainImages.
Sample = (
    tuple[tv_tensors.Image, tv_tensors.Mask]
    | tuple[tv_tensors.Image, tv_tensors.Mask, SoftTarget]
    | tuple[tv_tensors.Image]
)
Transform = Callable[..., Sample]


def read_rgb(path: Path) -> tv_tensors.Image:
    """An image file as a uint8 RGB ``tv_tensors.Image`` (3, H, W)."""
    with Image.open(path) as im:
        return tv_tensors.Image(torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1))


class SegmentationFolder(Dataset):
    """Image/label pairs of one split of a folder, labels mapped to the task classes.

    Items are ``(image, mask)``: a uint8 ``tv_tensors.Image`` (3, H, W) and an int64
    ``tv_tensors.Mask`` (H, W) holding task ids and IGNORE_INDEX, passed through ``transform``
    when given. Labels are mapped by class name: with the source's table when the folder is
    named after a known source (``camvid``, ...), by name alone otherwise, and to themselves
    for a prepared folder. With ``teacher`` (a fusion rule of train.teacher_targets.FUSIONS) items are
    ``(image, mask, target)``, the fused teacher probabilities transformed with them. With ``scoring`` a raw
    source's labels are read as scoring reads them (task.classes.SCORING_TABLES).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Transform | None = None,
        teacher: str | None = None,
        scoring: bool = False,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.teacher = teacher
        self.source_name = self.root.resolve().name
        classes_txt = self.root / "classes.txt"
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}")
        if not classes_txt.is_file():
            raise FileNotFoundError(f"no classes.txt in dataset folder: {classes_txt}")
        source = self.source_name if self.source_name in SOURCE_TABLES else None
        self.lut = lookup_table(read_classes_txt(classes_txt), source, scoring)

        image_dir = self.root / "images" / split
        label_dir = self.root / "labels" / split
        if not image_dir.is_dir():
            raise FileNotFoundError(f"no image folder for split {split!r}: {image_dir}")
        self.image_paths = image_files(image_dir)
        if not self.image_paths:
            raise FileNotFoundError(f"no images (*.jpg, *.png) in {image_dir}")
        labels = {p.name for p in label_dir.glob("*.png")} if label_dir.is_dir() else set()
        missing = [p for p in self.image_paths if f"{p.stem}.png" not in labels]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image(s) without a label, e.g. {missing[0]}: expected "
                f"{label_dir / (missing[0].stem + '.png')}"
            )
        self.stems = [p.stem for p in self.image_paths]
        self.label_paths = [label_dir / f"{stem}.png" for stem in self.stems]

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> Sample:
        image_path, label_path = self.image_paths[index], self.label_paths[index]
        image = read_rgb(image_path)
        with Image.open(label_path) as lab:
            if lab.mode not in ("L", "P"):
                raise ValueError(f"label is not an 8-bit class-id image (mode {lab.mode}): {label_path}")
            raw = np.asarray(lab)
        if raw.shape != image.shape[-2:]:
            raise ValueError(
                f"label size {raw.shape[1]}x{raw.shape[0]} differs from image size "
                f"{image.shape[-1]}x{image.shape[-2]}: {label_path}"
            )
        mask = tv_tensors.Mask(torch.from_numpy(self.lut[raw]).long())
        sample: Sample = (image, mask)
        if self.teacher is not None:
            target = load_target(self.root, self.split, self.stems[index], self.teacher)
            if target.shape[-2:] != mask.shape:
                raise ValueError(f"teacher target of {image_path.name} is not the image's size: remake it")
            sample = (image, mask, target)
        return self.transform(*sample) if self.transform is not None else sample


class WithClassWeights(Dataset):
    """The items of ``dataset`` with a (C,) tensor appended: item i's ``weights[i]``, the factors on the loss of its
    labelled pixels of each class (train.train's --folder-class-weights)."""

    def __init__(self, dataset: Dataset, weights: torch.Tensor) -> None:
        if weights.ndim != 2 or len(weights) != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"class weights of shape {tuple(weights.shape)} for {len(dataset)} items")  # type: ignore[arg-type]
        self.dataset, self.weights = dataset, weights

    def __len__(self) -> int:
        return len(self.weights)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return (*self.dataset[index], self.weights[index])


def train_transform(crop_size: int, base_size: int | None = None) -> v2.Compose:
    """Training augmentation applied jointly to image and mask (mmseg's ADE20K recipe).

    Random resize of the short side to 0.5-2.0 x ``base_size`` (default ``crop_size``), random
    ``crop_size`` crop (padding the image with 0 and the mask with IGNORE_INDEX where the
    image is smaller), horizontal flip, and photometric distortion: brightness, contrast,
    saturation and hue jitter, each applied with probability 0.5 (close to mmseg's
    PhotoMetricDistortion; brightness is a factor here, a +-32 offset there). Returns uint8
    images; normalisation belongs to the model.
    """
    base = base_size or crop_size
    return v2.Compose(
        [
            v2.RandomResize(base // 2, 2 * base + 1),
            v2.RandomCrop(
                crop_size,
                pad_if_needed=True,
                fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX, SoftTarget: 0},
            ),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(brightness=32 / 255)]),
            v2.RandomApply([v2.ColorJitter(contrast=0.5)]),
            v2.RandomApply([v2.ColorJitter(saturation=0.5)]),
            v2.RandomApply([v2.ColorJitter(hue=18 / 180)]),
        ]
    )


def training_images(folders: Sequence[str | Path]) -> list[Path]:
    """The images of the training split of each folder (FOLDER/images/train), labelled or not."""
    paths: list[Path] = []
    for folder in folders:
        split = Path(folder) / "images" / "train"
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"dataset folder not found: {folder}")
        if not split.is_dir():
            raise FileNotFoundError(f"no training images in {folder}: expected the folder {split}")
        found = image_files(split)
        if not found:
            raise FileNotFoundError(f"no images (*.jpg, *.png) in {split}")
        paths += found
    return paths


class TrainImages(Dataset):
    """The training images of ``folders`` without their labels: items ``(image,)``, a uint8 ``tv_tensors.Image``
    (3, H, W) passed through ``transform``."""

    def __init__(self, folders: Sequence[str | Path], transform: v2.Transform) -> None:
        self.paths = training_images(folders)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image]:
        return (self.transform(read_rgb(self.paths[index])),)


#: RandomResizedCrop's range of the crop's share of the image area (image_transform).
CROP_SCALE = (0.25, 1.0)


def image_transform(crop_size: int) -> v2.Compose:
    """Augmentation of images alone (the hint stage's, as DeiT's): RandomResizedCrop (scale 0.25-1) to
    ``crop_size``, horizontal flip and colour jitter (strength 0.4)."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(crop_size, scale=CROP_SCALE, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
        ]
    )


def collate(batch: Sequence[Sample]) -> tuple[torch.Tensor, ...]:
    """Stack same-size samples into (B, 3, H, W) uint8 images and (B, H, W) int64 masks (and, with teacher
    targets, (B, C, H, W) float targets; images alone from TrainImages).

    Full-resolution evaluation images differ in size: evaluate those with batch size 1.
    """
    sizes = {tuple(sample[0].shape[-2:]) for sample in batch}
    if len(sizes) > 1:
        raise ValueError(f"cannot batch images of different sizes {sorted(sizes)}; use batch_size=1")
    return tuple(torch.stack([part.as_subclass(torch.Tensor) for part in parts]) for parts in zip(*batch, strict=True))

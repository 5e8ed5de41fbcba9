"""The folder layout the client enrolls: one item per sub-folder, its image files inside."""

from __future__ import annotations

from pathlib import Path

# Judged by name here only to pick files; the service judges by content and refuses the rest.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def _visible(path: Path) -> bool:
    # Dot-names are metadata, not photos: macOS writes "._IMG_1.jpg" AppleDouble files next to
    # every photo on a foreign filesystem, and tools keep caches in ".thumbnails/" and the like.
    return not path.name.startswith(".")


def image_files(folder: Path) -> list[Path]:
    """The image-named files directly inside ``folder``, by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if _visible(p) and p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def item_folders(root: Path) -> dict[str, list[Path]]:
    """Sub-folder name → its image files, for every sub-folder of ``root`` that has any."""
    if not root.is_dir():
        raise NotADirectoryError(f"missing folder: {root}")
    items = {d.name: image_files(d) for d in sorted(root.iterdir()) if _visible(d) and d.is_dir()}
    return {name: files for name, files in items.items() if files}

"""A whole firmware image: the flash chip's bytes, its FMAP regions, and the CBFS in ``COREBOOT``.

This is the model ``heads rom`` edits and ``flashrom`` writes (docs/firmware-image.md).  Two kinds
of image are read:

* an FMAP image, like a real coreboot ROM: an FMAP blob somewhere in the image names the
  regions, and the CBFS fills the ``COREBOOT`` region;
* a flat CBFS image with an x86 master header (``cbfstool create -m x86``), as the QEMU
  platform's user-file image.

Edits (:meth:`FlashImage.with_file`, :meth:`FlashImage.without_file`) change the CBFS bytes
only and return a new image; everything else (the descriptor, ME, MRC cache, bootblock, any
bytes heads does not understand) is kept as it was, so a read-edit-write cycle is lossless.
:func:`new_flash_image` makes a fresh image of a given size from a layout, byte-identical to
``fmaptool`` + ``cbfstool create -M FMAP -r COREBOOT``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from heads.core.cbfs import (
    MAX_IMAGE_BYTES,
    CbfsFile,
    add_file,
    cbfs_bounds,
    format_region,
    free_bytes,
    read_cbfs,
    remove_file,
)
from heads.core.fmap import Fmap, FmapArea, check_areas, find_fmap
from heads.errors import FormatError

__all__ = [
    "CBFS_REGION",
    "FlashImage",
    "FlashLayout",
    "new_flash_image",
    "standard_layout",
]

#: The FMAP region holding the CBFS coreboot boots from (cbfstool's default ``-r``).
CBFS_REGION: Final = "COREBOOT"
#: The smallest chip :func:`standard_layout` lays out: descriptor, ME, and room for a payload.
_MIN_STANDARD_SIZE: Final = 4 * 1024 * 1024
_MIB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FlashLayout:
    """An FMAP layout: the flash's name and size, its areas, and which one holds the CBFS."""

    size: int
    areas: tuple[FmapArea, ...]
    name: str = "FLASH"
    cbfs_region: str = CBFS_REGION

    @property
    def base(self) -> int:
        """Where x86 maps the flash: its last byte at 4 GiB - 1."""
        return (1 << 32) - self.size

    def fmap(self) -> Fmap:
        return Fmap(self.name, self.base, self.size, self.areas)

    def to_fmd(self) -> str:
        """The layout in ``fmaptool``'s .fmd language (areas nested by containment)."""
        lines = [f"{self.name}@{self.base:#x} {self.size:#x} {{"]
        stack: list[FmapArea] = []
        for a in self.areas:
            while stack and not stack[-1].contains(a):
                stack.pop()
                lines.append("  " * (len(stack) + 1) + "}")
            parent = stack[-1].offset if stack else 0
            indent = "  " * (len(stack) + 1)
            suffix = "(CBFS)" if a.name == self.cbfs_region else ""
            children = any(a.contains(b) and b is not a for b in self.areas)
            lines.append(f"{indent}{a.name}{suffix}@{a.offset - parent:#x} {a.size:#x}")
            if children:
                lines[-1] += " {"
                stack.append(a)
        while stack:
            stack.pop()
            lines.append("  " * (len(stack) + 1) + "}")
        lines.append("}")
        return "\n".join(lines) + "\n"


def standard_layout(size: int = 16 * _MIB, *, me_size: int = 0x2FF000) -> FlashLayout:
    """The layout of an Intel-style chip: descriptor and ME, then the BIOS region with the MRC
    cache, the FMAP and the CBFS (``COREBOOT``) filling the rest.

    Raises:
        ValueError: ``size`` is not a power of two of at least 4 MiB, or the ME leaves no room.
    """
    if size < _MIN_STANDARD_SIZE or size & (size - 1):
        raise ValueError(f"a flash chip of {size} bytes is not a power of two >= 4 MiB")
    desc = 0x1000
    si_all = desc + me_size
    if si_all % 0x1000 or si_all + 0x10000 + 0x200 + _MIB > size:
        raise ValueError(f"an ME of {me_size:#x} bytes leaves no room in a {size:#x} chip")
    mrc = 0x10000
    fmap_size = 0x200
    bios = size - si_all
    cbfs = si_all + mrc + fmap_size
    return FlashLayout(
        size,
        (
            FmapArea("SI_ALL", 0, si_all),
            FmapArea("SI_DESC", 0, desc),
            FmapArea("SI_ME", desc, me_size),
            FmapArea("SI_BIOS", si_all, bios),
            FmapArea("RW_MRC_CACHE", si_all, mrc),
            FmapArea("FMAP", si_all + mrc, fmap_size),
            FmapArea(CBFS_REGION, cbfs, size - cbfs),
        ),
    )


def new_flash_image(layout: FlashLayout, *, source: str = "new image") -> FlashImage:
    """An erased chip of ``layout.size`` bytes with the FMAP written and an empty CBFS.

    Raises:
        ValueError: the layout has no ``FMAP`` area large enough or no CBFS area.
    """
    check_areas(layout.areas, layout.size, source)
    fmap = layout.fmap()
    fmap_area = fmap.area("FMAP")
    cbfs_area = fmap.area(layout.cbfs_region)
    if fmap_area is None or fmap_area.size < fmap.blob_size:
        raise ValueError("the layout needs an FMAP area large enough for the flash map")
    if cbfs_area is None:
        raise ValueError(f"the layout has no {layout.cbfs_region} area for the CBFS")
    data = bytearray(b"\xff" * layout.size)
    blob = fmap.to_bytes()
    data[fmap_area.offset : fmap_area.offset + len(blob)] = blob
    image = format_region(bytes(data), cbfs_area.offset, cbfs_area.end)
    return FlashImage.from_bytes(image, source=source)


@dataclass(frozen=True, slots=True)
class FlashImage:
    """A firmware image and where its CBFS lies (``cbfs_start``/``cbfs_end``, absolute)."""

    data: bytes
    fmap: Fmap | None
    fmap_offset: int | None
    cbfs_start: int
    cbfs_end: int
    source: str = "firmware image"

    @classmethod
    def from_bytes(
        cls, data: bytes, *, source: str = "firmware image", expected_size: int | None = None
    ) -> FlashImage:
        """Parse a firmware image: FMAP first, a flat CBFS image otherwise.

        Raises:
            FormatError: the size is wrong or too large, the FMAP is invalid or does not
                describe this image, there is no CBFS region, or the CBFS is damaged; the
                message names ``source``, the place and the reason.
        """
        if len(data) > MAX_IMAGE_BYTES:
            raise FormatError(
                f"image is {len(data)} bytes, more than the {MAX_IMAGE_BYTES} allowed",
                source=source,
            )
        if expected_size is not None and len(data) != expected_size:
            raise FormatError(
                f"image is {len(data)} bytes but the flash chip holds {expected_size}",
                source=source,
            )
        try:
            found = find_fmap(data, source=source)
        except FormatError:
            if cbfs_bounds(data, source) is None:
                raise
            found = None  # a stray signature inside a flat CBFS image's file data
        if found is None:
            bounds = cbfs_bounds(data, source)
            if bounds is None:
                raise FormatError(
                    "neither an FMAP nor a CBFS master header: not a coreboot image",
                    source=source,
                )
            image = cls(data, None, None, bounds[0], bounds[1], source)
        else:
            offset, fmap = found
            if fmap.size != len(data):
                raise FormatError(
                    f"the FMAP describes a {fmap.size}-byte flash but the image is "
                    f"{len(data)} bytes",
                    source=source,
                    offset=offset,
                )
            area = fmap.area(CBFS_REGION)
            if area is None:
                raise FormatError(
                    f"the FMAP has no {CBFS_REGION} region", source=source, offset=offset
                )
            image = cls(data, fmap, offset, area.offset, area.end, source)
        image.files()  # the CBFS must parse, so every later call works
        return image

    def to_bytes(self) -> bytes:
        return self.data

    @property
    def size(self) -> int:
        return len(self.data)

    def files(self) -> list[CbfsFile]:
        """The CBFS files in image order (offsets from the CBFS start, as cbfstool prints)."""
        return read_cbfs(self.data, self.cbfs_start, self.cbfs_end, source=self.source)

    def file(self, name: str) -> CbfsFile | None:
        return next((f for f in self.files() if f.name == name), None)

    def free_space(self) -> int:
        return free_bytes(self.data, self.cbfs_start, self.cbfs_end, source=self.source)

    def _replace_data(self, data: bytes) -> FlashImage:
        return FlashImage(
            data, self.fmap, self.fmap_offset, self.cbfs_start, self.cbfs_end, self.source
        )

    def with_file(self, f: CbfsFile, *, replace: bool = False) -> FlashImage:
        """The image with ``f`` added (replacing a file of that name when ``replace``).

        A replaced file goes where the first free entry large enough is, as cbfstool's
        ``remove`` then ``add`` would put it, so it may move within the image order.

        Raises:
            ValueError: the name is taken (and not ``replace``) or the CBFS is full.
        """
        data = self.data
        if replace and self.file(f.name) is not None:
            data = remove_file(data, f.name, self.cbfs_start, self.cbfs_end, source=self.source)
        return self._replace_data(
            add_file(data, f, self.cbfs_start, self.cbfs_end, source=self.source)
        )

    def without_file(self, name: str) -> FlashImage:
        """The image without ``name``.

        Raises:
            KeyError: there is no such file.
        """
        return self._replace_data(
            remove_file(self.data, name, self.cbfs_start, self.cbfs_end, source=self.source)
        )

    def with_files(self, files: Sequence[CbfsFile], *, replace: bool = False) -> FlashImage:
        image = self
        for f in files:
            image = image.with_file(f, replace=replace)
        return image

    def region(self, name: str) -> bytes:
        """The bytes of an FMAP region.

        Raises:
            KeyError: no FMAP, or no region of that name.
        """
        area = self.fmap.area(name) if self.fmap is not None else None
        if area is None:
            raise KeyError(name)
        return self.data[area.offset : area.end]

"""What one ingest input is: a single image file or one DICOM series (several files)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Source:
    """One input volume.

    uri names it in the catalog: the file path/URL, or `<folder>#<SeriesInstanceUID>` for a DICOM series.
    files are the path(s)/URL(s) to read; remote ones are copied to a local temp dir before reading.
    """

    uri: str
    kind: str
    """"file" or "dicom"."""
    files: list[str] = field(default_factory=list)
    series_uid: str | None = None

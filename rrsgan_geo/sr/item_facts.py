"""What a STAC Item of an output needs that planning checks before any work, without
pystac (`sr` of local files loads neither pystac nor pyproj): where the Item goes and
when the scene was taken.

The acquisition time comes from the scene's tags (TIFFTAG_DATETIME,
ACQUISITIONDATETIME) or its file name (a YYYYMMDD date, with THHMMSS if there), else
from `--stac-datetime` (an instant or a START/END range).
"""

import re
from datetime import UTC, datetime
from pathlib import Path

from rrsgan_geo.errors import ConfigError

ITEM_SUFFIX = ".stac.json"
_DATE_TAGS = ("TIFFTAG_DATETIME", "ACQUISITIONDATETIME", "ACQUISITION_DATE", "DATE_ACQUIRED")
_NAME_DATE = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2}))?(?!\d)")


def item_path(output: Path) -> Path:
    """Where the Item of `output` goes: beside it, `<name>.stac.json`."""
    return output.with_name(output.stem + ITEM_SUFFIX)


def acquisition_time(tags: dict[str, str], name: str) -> datetime | None:
    """When the scene was taken, from its tags or its file name; None if neither says."""
    for key in _DATE_TAGS:
        value = tags.get(key, "").strip()
        for pattern in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
            try:
                return datetime.strptime(value[:19], pattern).replace(tzinfo=UTC)
            except ValueError:
                continue
    match = _NAME_DATE.search(Path(name).name)
    if match:
        year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:  # eight digits that are not a date
            return None
    return None


def parse_stac_datetime(text: str) -> tuple[datetime | None, datetime | None, datetime | None]:
    """(datetime, start, end) from --stac-datetime: an instant, or START/END."""
    parts = text.split("/")
    if len(parts) not in (1, 2):
        raise ConfigError(f"--stac-datetime {text!r}: give a date or START/END")
    try:
        times = [_parse_instant(part) for part in parts]
    except ValueError:
        raise ConfigError(
            f"--stac-datetime {text!r}: use ISO dates, e.g. 2024-05-01 or "
            "2024-05-01/2024-05-31 or 2024-05-01T10:30:00Z"
        ) from None
    if len(times) == 1:
        return times[0], None, None
    if times[0] > times[1]:
        raise ConfigError(f"--stac-datetime {text!r}: the start is after the end")
    return None, times[0], times[1]


def _parse_instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

"""Write files so that readers (and a process killed mid-write) never see half of one.

Plain Python with no Django import, so the model file code can use it outside the site too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: Path, write: Callable[[IO[Any]], Any], *, text: bool = False) -> Any:
    """Call `write(fh)` on a temporary sibling of `path`, fsync it, then rename it over `path`.

    Returns what `write` returned. On any failure the temporary file is removed and `path` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        opened: IO[Any] = os.fdopen(fd, "w", encoding="utf-8", newline="") if text else os.fdopen(fd, "wb")
        with opened as fh:
            result = write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return result

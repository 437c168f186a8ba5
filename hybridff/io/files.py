"""Atomic file writes: a temporary file in the same folder, flushed, then renamed into place.

Readers never see a half-written cache entry, model, report or checkpoint, even when a run is
killed or two processes write the same file: they see the old file or the new one, whole.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


def _default_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give a new file (0o666 less the umask)."""
    try:  # Linux: read the umask without changing it (os.umask would, for all threads)
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path`` atomically.

    ``mode`` is ``"w"`` or ``"wb"`` (``kwargs`` go to :func:`open`, e.g. ``newline=""``).
    If the block raises, the temporary file is removed and ``path`` is left as it was. The
    new file gets the permissions of the file it replaces, else those of a plain ``open``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode == "w":
            kwargs.setdefault("encoding", "utf-8")
        with os.fdopen(fd, mode, **kwargs) as handle:
            try:
                permissions = path.stat().st_mode & 0o7777
            except FileNotFoundError:
                permissions = _default_mode()
            os.fchmod(handle.fileno(), permissions)  # mkstemp makes it 0o600
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (creating the parent folder)."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append ``record`` to the JSON-lines file ``path`` in one flushed, fsync'ed write (a
    record cut short by an interrupted earlier write is ended first, so it stays on its own
    line)."""
    import json

    path = Path(path)
    cut = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(("\n" if cut else "") + json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def rewrite_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """Replace the JSON-lines file ``path`` by ``records``, one a line (atomically), or remove
    it when there are none."""
    import json

    text = "".join(json.dumps(record) + "\n" for record in records)
    if text:
        atomic_write_text(path, text)
    else:
        Path(path).unlink(missing_ok=True)


def read_jsonl(path: str | os.PathLike, what: str = "record") -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, one a line (empty when it does not exist).

    An incomplete last line (an interrupted write) is skipped with a warning; any other line
    that is not a JSON object is a :class:`~hybridff.exceptions.DataFormatError` naming the
    line (``what`` names a record in the message)."""
    import json
    import logging

    from hybridff.exceptions import DataFormatError

    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if number == len(lines) and not text.endswith("\n"):
                logging.getLogger(__name__).warning(
                    "%s:%d: an incomplete record (an interrupted write); ignoring it", path,
                    number)
                continue
            raise DataFormatError(f"{path}:{number}: not a {what} ({exc}); repair or delete "
                                  "this line") from exc
        records.append(record)
    return records

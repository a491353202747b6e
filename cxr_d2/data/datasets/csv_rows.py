"""
The annotation tables (CSV) of the NIH, RSNA, SIIM and VinDr sources, read row by row: a file
that cannot be a table of the expected columns (empty, header only, another header or
delimiter, not UTF-8) is a DatasetError naming it; a row that cannot be used (cells missing or
extra, a NUL byte, an exact duplicate) is reported and skipped.
"""

import csv

from ...errors import DatasetError

__all__ = ["read_csv_rows"]


def _header_error(path, header, columns, missing=None):
    found = ",".join(header)[:80]
    hint = next(
        (f"; it looks separated by {d!r}, not ','" for d in (";", "\t", "|") if d in found), ""
    )
    what = f"lacks the columns {sorted(missing)}" if missing else f"{found!r} is not"
    return DatasetError(
        f"{path}:1: the header {what} the expected '{', '.join(columns)}'"
        + (f" (found {found!r})" if missing else "")
        + hint
    )


def _rows(path, reader, log):
    """(row number, cells) of every non-blank row; a row csv cannot split is reported."""
    row_no = 1
    while True:
        row_no += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            log.report(f"{path}:{row_no}", f"unreadable CSV row ({e})", "row")
            continue
        if any(cell.strip() for cell in row):
            yield row_no, row


def read_csv_rows(path, log, columns, header_columns=None, duplicates=True):
    """
    The data rows of a source's CSV file (UTF-8, a byte order mark allowed).

    Args:
        path (str): the file.
        log (ProblemLog): where row problems go.
        columns (list[str]): the names the rows are returned with.
        header_columns (callable or None): header (list[str]) -> the cell index of each of
            `columns` (or None when the header is not the source's), and every row must have
            exactly as many cells as `columns`; default: found by name in the header, and a
            row must have as many cells as the header.
        duplicates (bool): report and skip a row that repeats an earlier one exactly.

    Yields:
        tuple(int, dict): the row number (the header is row 1) and column -> stripped cell.

    Raises:
        DatasetError: naming the file and the expected columns when the file cannot be read,
        is empty, is not UTF-8 text, has another header (a wrong delimiter shows here) or has
        a header and no row. A row of another length, one csv cannot split, one holding a NUL
        byte or (`duplicates`) a repeated row is reported and skipped (counted as "row").
    """
    expected = ", ".join(columns)
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read ({e.strerror})") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise DatasetError(f"{path}: the file is empty; expected a header '{expected}'")
            index = _column_index(path, header, columns, header_columns)
            width = len(columns) if header_columns else len(header)
            seen, rows = {}, 0
            for row_no, row in _rows(path, reader, log):
                rows += 1
                where = f"{path}:{row_no}"
                problem = _row_problem(row, width, seen if duplicates else None, row_no)
                if problem:
                    log.report(where, problem, "row")
                    continue
                yield row_no, {c: row[i].strip() for c, i in index.items()}
        except UnicodeDecodeError as e:
            raise DatasetError(
                f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x}); save it as UTF-8 CSV "
                f"with the columns '{expected}'"
            ) from None
        except csv.Error as e:
            raise DatasetError(f"{path}:1: unreadable CSV header ({e})") from None
    if not rows:
        raise DatasetError(f"{path}: a header and no data row; expected rows of '{expected}'")


def _column_index(path, header, columns, header_columns):
    if header_columns:
        index = header_columns(header)
        if index is None:
            raise _header_error(path, header, columns)
        return index
    names = [h.strip() for h in header]
    missing = set(columns) - set(names)
    if missing:
        raise _header_error(path, header, columns, missing)
    return {c: names.index(c) for c in columns}


def _row_problem(row, width, seen, row_no):
    if len(row) != width:
        multiline = any("\n" in cell for cell in row)
        return f"{len(row)} cells, expected {width}" + (
            " (an unclosed quote joins it to the lines below)" if multiline else ""
        )
    if any("\0" in cell for cell in row):
        return "a cell holds a NUL byte (a damaged file?)"
    if seen is not None:
        key = tuple(cell.strip() for cell in row)
        if key in seen:
            return f"the same row is listed twice (first at row {seen[key]})"
        seen[key] = row_no
    return None

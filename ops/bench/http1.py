"""The little HTTP/1.1 the benchmark's load generator and receiver speak: one message head."""

from __future__ import annotations

_HEAD_END = b"\r\n\r\n"


def take_head(buffer: bytearray) -> tuple[list[bytes], dict[bytes, bytes], int] | None:
    """Read the message head at the start of `buffer`, once it is whole; None until then.

    Answers the start line's three words (the last one holds the rest of the
    line), the header fields (names lowercased, values stripped), and the
    offset where the body starts. The buffer is left as it was.
    """
    end = buffer.find(_HEAD_END)
    if end < 0:
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    return lines[0].split(b" ", 2), fields, end + len(_HEAD_END)

#!/usr/bin/python3
"""Prints what a deltaserve state directory holds, and verifies its checksums.

    PYTHONPATH=build/python /usr/bin/python3 scripts/inspect_state.py DIR [--no-verify]

DIR is a --state_dir (one subdirectory per model) or one model's directory.
For each checkpoint: version, last journal entry included, parameter count,
optimizer steps, request_ids remembered, creation time, and whether its
CRC32C verifies; for each journal segment: its entries, the seq range, and a
torn or corrupt tail if there is one (docs/operations.md, "State on disk").
Read-only: safe on a live server's directory. Exit 1 if anything fails to
verify. Needs the generated deltaserve.v1 stubs (state_pb2) on PYTHONPATH.
"""
import argparse
import datetime
import os
import struct
import sys

from deltaserve.v1 import state_pb2


def _crc32c_table():
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    """CRC32C (Castagnoli), as server/persist/crc32c.h computes it."""
    crc ^= 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF


def inspect_checkpoint(path, verify):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 20 or data[:8] != b"DSCKPT01":
        print("  %s: not a checkpoint (no DSCKPT01 header)" % os.path.basename(path))
        return False
    length, crc = struct.unpack_from("<QI", data, 8)
    payload = data[20:]
    if len(payload) != length:
        print("  %s: truncated (%d of %d bytes)" % (os.path.basename(path), len(payload), length))
        return False
    ok = not verify or crc32c(payload) == crc
    c = state_pb2.StateCheckpoint()
    c.ParseFromString(payload)
    created = datetime.datetime.fromtimestamp(c.created_unix_micros / 1e6, datetime.timezone.utc)
    print("  %s: version %d, journal seq %d, %d parameters, optimizer steps %d, "
          "%d rows accumulated, %d request_ids, created %s, %s" % (
              os.path.basename(path), c.version, c.journal_seq, len(c.parameters),
              c.optimizer_steps, c.rows_accumulated, len(c.applied_requests),
              created.isoformat(timespec="seconds"),
              "checksum ok" if verify and ok else ("NOT VERIFIED" if not verify else
                                                   "CHECKSUM MISMATCH")))
    return ok


def inspect_segment(path, verify):
    with open(path, "rb") as f:
        data = f.read()
    offset, seqs, problem = 0, [], ""
    while offset < len(data):
        if len(data) - offset < 16:
            problem = "incomplete header"
            break
        length, crc, seq = struct.unpack_from("<IIQ", data, offset)
        if length > len(data) - offset - 16:
            problem = "incomplete record (seq %d)" % seq
            break
        payload = data[offset + 16:offset + 16 + length]
        if verify and crc32c(payload, crc32c(struct.pack("<IQ", length, seq))) != crc:
            problem = "checksum mismatch (seq %d)" % seq
            break
        seqs.append(seq)
        offset += 16 + length
    span = "seq %d..%d" % (seqs[0], seqs[-1]) if seqs else "empty"
    tail = "" if not problem else ", then %s at byte %d (%d bytes a restart drops)" % (
        problem, offset, len(data) - offset)
    print("  %s: %d entries, %s%s" % (os.path.basename(path), len(seqs), span, tail))
    return not problem


def inspect_model(directory, verify):
    print(directory)
    ok = True
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.startswith("checkpoint-") and name.endswith(".ckpt"):
            ok = inspect_checkpoint(path, verify) and ok
        elif name.startswith("journal-") and name.endswith(".log"):
            ok = inspect_segment(path, verify) and ok
        else:
            print("  %s: not deltaserve's (ignored by the server)" % name)
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip CRC32C checks (pure Python: ~5 MB/s)")
    args = parser.parse_args()
    names = sorted(os.listdir(args.dir))
    is_model = any(n.startswith(("checkpoint-", "journal-")) for n in names)
    dirs = [args.dir] if is_model else [os.path.join(args.dir, n) for n in names
                                        if os.path.isdir(os.path.join(args.dir, n))]
    ok = all([inspect_model(d, not args.no_verify) for d in dirs])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Writes the seeds of state_fuzzer (tests/fuzz/corpus/state_fuzzer/*.bin).

An input is u32 L | a checkpoint file of L bytes | a journal segment, for the
fuzzer's model (3 → 4 tanh → 2 identity, ADAM; 26 parameters; input
normalisation RUNNING_MEAN_STD). Run after
changing the on-disk format, with the generated stubs on the path:

    PYTHONPATH=build/python /usr/bin/python3 tests/fuzz/make_state_seeds.py
"""
import importlib.util
import os
import struct

from deltaserve.v1 import config_pb2, state_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "inspect_state", os.path.join(HERE, "..", "..", "scripts", "inspect_state.py"))
inspect_state = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(inspect_state)
crc32c = inspect_state.crc32c
PARAMETERS = 4 * 3 + 4 + 2 * 4 + 2


def checkpoint(seq, version, units=4, statistics=False):
    c = state_pb2.StateCheckpoint(version=version, journal_seq=seq, optimizer_steps=version,
                                  rows_accumulated=0)
    c.spec.name = "m"
    c.spec.input_dim = 3
    c.spec.layers.add(units=units, activation=config_pb2.ACTIVATION_TANH)
    c.spec.layers.add(units=2, activation=config_pb2.ACTIVATION_IDENTITY)
    c.spec.optimizer.kind = config_pb2.OptimizerConfig.ADAM
    count = units * 3 + units + 2 * units + 2
    c.parameters.extend([0.1 * ((i % 7) - 3) for i in range(count)])
    c.accumulated_gradient.extend([0.0] * count)
    for _ in range(2):  # Adam's m and v.
        m = c.optimizer_state.add(rows=1, cols=count)
        m.data.extend([0.01] * count)
    c.applied_requests.add(request_id="seed-1", version=version, surrogate_loss=0.5)
    if statistics:
        c.spec.input_normalization.kind = config_pb2.InputNormalization.RUNNING_MEAN_STD
        c.spec.input_normalization.clip = 10
        c.spec.input_normalization.epsilon = 1e-8
        s = c.input_statistics
        s.mean.extend([0.5, -1.0, 2.0])
        s.var.extend([1.5, 0.25, 4.0])
        s.count = 12.0001
        s.clip, s.epsilon = 10, 1e-8
        c.pending_moments.mean.extend([0.1, 0.2, 0.3])
        c.pending_moments.var.extend([0.0, 0.5, 1.0])
        c.pending_moments.count = 0
    payload = c.SerializeToString()
    return b"DSCKPT01" + struct.pack("<QI", len(payload), crc32c(payload)) + payload


def record(seq, request_id, batched_with_next=False):
    e = state_pb2.JournalEntry()
    s = e.submission
    s.request_id = request_id
    s.scale = 1.0
    s.batched_with_next = batched_with_next
    s.inputs.rows, s.inputs.cols = 1, 3
    s.inputs.data.extend([0.5, -0.25, 1.0])
    s.deltas.rows, s.deltas.cols = 1, 2
    s.deltas.data.extend([0.1, -0.2])
    payload = e.SerializeToString()
    return struct.pack("<IIQ", len(payload), crc32c(payload, crc32c(
        struct.pack("<IQ", len(payload), seq))), seq) + payload


def imported(seq, mean):
    e = state_pb2.JournalEntry()
    i = getattr(e, "import")
    i.parameters.extend([0.05] * PARAMETERS)
    i.input_statistics.mean.extend(mean)
    i.input_statistics.var.extend([1.0] * len(mean))
    i.input_statistics.count = 3.0
    i.input_statistics.clip, i.input_statistics.epsilon = 10, 1e-8
    payload = e.SerializeToString()
    return struct.pack("<IIQ", len(payload), crc32c(payload, crc32c(
        struct.pack("<IQ", len(payload), seq))), seq) + payload


def seed(name, ckpt, journal):
    with open(os.path.join(HERE, "corpus", "state_fuzzer", name + ".bin"), "wb") as f:
        f.write(struct.pack("<I", len(ckpt)) + ckpt + journal)


journal = record(3, "a") + record(4, "b", batched_with_next=True) + record(5, "c")
seed("valid", checkpoint(2, 2), journal)
seed("torn_tail", checkpoint(2, 2), journal[:-7])
seed("no_checkpoint_journal_from_start", b"", record(1, "x") + record(2, "y"))
seed("empty", b"", b"")
seed("other_network", checkpoint(2, 2, units=5), journal)
seed("gap", checkpoint(2, 2), record(4, "b"))
seed("with_statistics", checkpoint(2, 2, statistics=True), journal)
seed("import_with_statistics", checkpoint(2, 2, statistics=True), imported(3, [1.0, 2.0, 3.0]))
seed("import_statistics_wrong_width", checkpoint(2, 2, statistics=True), imported(3, [1.0]))
seed("batched_group_cut", checkpoint(2, 2), record(3, "a", batched_with_next=True))
print("state_fuzzer: %d seeds" % len(os.listdir(os.path.join(HERE, "corpus", "state_fuzzer"))))

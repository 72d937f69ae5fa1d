"""How a snapshot group is kept: a pickle in a zstd frame (level 1).

Each epoch Bytewax pickles every touched shard's whole snapshot once more, so for a moment all
its groups exist twice (the soak: about 320 MB every 5 s, the peaks of its RSS), and between
snapshots the groups stay in memory beside the state they were made from. Compressed, both
are about a third (2.8x on window and session groups; 200 MB/s here, paid once per changed
group, against 40 MB/s for the pickling itself).

Groups written before (WindowsSnapshot 4, SessionsSnapshot 1) are bare pickles. The first
bytes tell them apart: a pickle of protocol 2 or more starts with PROTO (0x80), a zstd frame
with its magic number; anything else is damage."""

import pickle
import threading

import zstandard

LEVEL = 1
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PICKLE_PROTO = b"\x80"

# zstd contexts are not for two threads at once, and a process's workers are threads.
_contexts = threading.local()


def pack(obj) -> bytes:
    """`obj` pickled and compressed."""
    try:
        compress = _contexts.compress
    except AttributeError:
        compress = _contexts.compress = zstandard.ZstdCompressor(level=LEVEL).compress
    return compress(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))


def is_packed(blob: bytes) -> bool:
    """Whether `blob` is of this format (not a bare pickle from before it)."""
    return blob[:4] == ZSTD_MAGIC


def unpack(blob: bytes):
    """The object in a packed or bare-pickle `blob`; ValueError when it is neither or damaged."""
    try:
        if blob[:4] == ZSTD_MAGIC:
            try:
                decompress = _contexts.decompress
            except AttributeError:
                decompress = _contexts.decompress = zstandard.ZstdDecompressor().decompress
            return pickle.loads(decompress(blob))
        if blob[:1] == PICKLE_PROTO:
            return pickle.loads(blob)
    except (zstandard.ZstdError, pickle.UnpicklingError, EOFError) as exc:
        raise ValueError(f"a snapshot group is damaged ({type(exc).__name__}: {exc})") from None
    raise ValueError(f"a snapshot group starts with {bytes(blob[:4])!r}, neither a zstd frame "
                     f"nor a pickle")

"""Embed a file of sentences: one float32 vector per input sentence, in input order.

    mixcse-encode MODEL INPUT OUTPUT [--text_column text] [--batch_size 64] [--pooler P] [--normalize]
        [--dtype float32|bfloat16|float16] [--max_seq_length L] [--chunk_size 10000] [--device D]
        [--backend torch|onnx|openvino] [--file_name F] [--progress] [--overwrite]

(also ``python -m mixcse_hf.cli.encode``).

MODEL: a mixcse_hf checkpoint, a plain HF encoder or a sentence-transformers directory, or a Hub id
(sentence-transformers/all-MiniLM-L6-v2 loads from its installed offline package). --backend onnx|openvino encodes
with a file that mixcse-export wrote into the MODEL folder (--file_name, e.g. model_quint8_avx2.onnx for int8).

INPUT, by extension (UTF-8):
  .txt          one sentence per line; row i of OUTPUT is line i, so a blank line is an error naming it
  .csv, .tsv    a header row naming each column once, then one sentence per row in the column --text_column
                (CSV fields may be quoted; TSV fields are read as they are, quotes included, as training reads them)
  .jsonl        one JSON object per line, the sentence under the key --text_column
A blank sentence (only whitespace, control or invisible characters) is an error in every format, and so is an
input without sentences. Lines end at LF, CRLF or CR; bytes that are not UTF-8 are an error naming the line.

OUTPUT, by extension:
  .npy          float32 array (N, d), streamed to disk: memory stays one chunk
  .safetensors  float32 tensor "embeddings" (N, d); the safetensors package saves a whole tensor, so all
                N x d x 4 bytes of it stay in memory until the end (use .npy for very large inputs)
  .jsonl        one {"text": ..., "embedding": [...]} per line, streamed

INPUT is read twice: a first pass counts and checks every sentence, so that a problem with the input, the
model or an option stops the command (one line on stderr, exit status 2) before anything is written; the
second encodes --chunk_size sentences at a time, batched by length within each chunk. OUTPUT is written under a
temporary name beside it and renamed once complete: a failed run leaves no partial file, and an OUTPUT
replaced with --overwrite stays intact until then. A killed run cannot clean up: its hidden .OUTPUT.HOST.PID.partial
is removed by the next run for the same OUTPUT (with a note). A summary line goes to stderr at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mixcse_hf.errors import UsageError, run_cli
from mixcse_hf.models.exports import BACKEND_NAMES
from mixcse_hf.output_files import check_output_file
from mixcse_hf.text_files import (
    batched,
    check_text_file,
    check_utf8,
    is_blank,
    read_lines,
    table_header,
    table_quoting,
)

if TYPE_CHECKING:  # numpy, torch and the model stack load only once the arguments are checked: they take seconds
    import torch
    from tqdm.auto import tqdm

    from mixcse_hf.models.backends import Encoder

INPUT_EXTENSIONS = (".txt", ".csv", ".tsv", ".jsonl")
DTYPES = ("float32", "bfloat16", "float16")
"""Compute dtypes, by their torch names."""
Chunks = Iterable[tuple[list[str], "torch.Tensor"]]
"""(sentences, their embeddings (len(sentences), d) float32 on the CPU), in input order."""


def file_extension(path: str, supported: Iterable[str], what: str) -> str:
    """``path``'s lower-case extension if it is one of ``supported``, else a UsageError listing them."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in supported:
        raise UsageError(
            f"{what} {path!r}: unsupported extension {extension or '(none)'!r}; use one of {', '.join(supported)}"
        )
    return extension


def read_sentence_lines(path: str) -> Iterator[str]:
    """The lines of a text file (:func:`mixcse_hf.text_files.read_lines`); a blank line is a UsageError naming it."""
    for number, text in read_lines(path, "INPUT"):
        if is_blank(text):
            raise UsageError(
                f"INPUT {path!r} line {number} is blank; every line is one sentence and one row of OUTPUT, "
                "so remove blank lines first"
            )
        yield text


def read_table(path: str, text_column: str, delimiter: str) -> Iterator[str]:
    """Column ``text_column`` of a CSV/TSV file, read as training reads it: a header that names each column once
    (:func:`mixcse_hf.text_files.table_header`), quoted CSV fields, TSV fields as they are; a missing column or an
    empty cell is a UsageError."""
    columns = table_header(path, delimiter, "INPUT")
    if text_column not in columns:
        raise UsageError(
            f"INPUT {path!r} has no column {text_column!r} (columns: {', '.join(columns)}); pass --text_column"
        )
    index = columns.index(text_column)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=table_quoting(delimiter), strict=True)
        next(reader)
        for row in reader:
            if not row:  # a blank line is no row
                continue
            text = row[index] if index < len(row) else None
            if is_blank(text):
                raise UsageError(f"INPUT {path!r} line {reader.line_num}: column {text_column!r} is empty")
            yield text


def read_jsonl(path: str, text_column: str) -> Iterator[str]:
    """Key ``text_column`` of each line's JSON object (the lines of :func:`mixcse_hf.text_files.read_lines`); anything
    else on a line is a UsageError naming it."""
    for number, line in read_lines(path, "INPUT"):
        where = f"INPUT {path!r} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UsageError(f"{where} is not JSON ({err.msg}); .jsonl holds one object per line") from err
        if not isinstance(record, dict):
            raise UsageError(f"{where} is a JSON {type(record).__name__}, not an object")
        if text_column not in record:
            keys = ", ".join(record) or "none"
            raise UsageError(f"{where} has no key {text_column!r} (keys: {keys}); pass --text_column")
        text = record[text_column]
        if not isinstance(text, str) or is_blank(text):
            raise UsageError(f"{where}: {text_column!r} is not a non-empty string")
        yield text


def read_texts(path: str, extension: str, text_column: str) -> Iterator[str]:
    """The sentences of INPUT in order, by its extension (one of :data:`INPUT_EXTENSIONS`)."""
    if extension == ".txt":
        return read_sentence_lines(path)
    if extension == ".jsonl":
        return read_jsonl(path, text_column)
    return read_table(path, text_column, "\t" if extension == ".tsv" else ",")


def check_input(path: str, extensions: Iterable[str] = INPUT_EXTENSIONS) -> str:
    """INPUT's extension, once it is one of ``extensions`` and INPUT is an existing, non-empty file
    (:func:`mixcse_hf.text_files.check_text_file`; its content is checked when read)."""
    extension = file_extension(path, extensions, "INPUT")
    check_text_file(path, "INPUT", lines=extension == ".txt", utf8=False)
    return extension


def count_texts(path: str, extension: str, text_column: str) -> int:
    """Read INPUT once, checking every sentence; returns how many there are (at least one)."""
    try:
        check_utf8(path, "INPUT")  # names the line, in every format
        count = sum(1 for _ in read_texts(path, extension, text_column))
    except csv.Error as err:
        raise UsageError(f"INPUT {path!r} is not valid {extension[1:].upper()} ({err})") from err
    except OSError as err:
        raise UsageError(f"cannot read INPUT {path!r} ({err.strerror})") from err
    if count == 0:
        raise UsageError(f"INPUT {path!r} holds no sentences")
    return count


def write_npy(path: str, shape: tuple[int, int], chunks: Chunks) -> None:
    """A float32 ``.npy`` of ``shape``: the header, then each chunk's rows appended, so memory stays one chunk (the
    pages written through a ``numpy.lib.format.open_memmap`` map would count in RSS until the kernel evicts them)."""
    import numpy as np
    from numpy.lib.format import write_array_header_1_0

    float32 = np.dtype("<f4")
    with open(path, "wb") as handle:
        write_array_header_1_0(handle, {"descr": float32.str, "fortran_order": False, "shape": shape})
        for _, embeddings in chunks:
            handle.write(embeddings.numpy().astype(float32, copy=False).tobytes())


def write_safetensors(path: str, shape: tuple[int, int], chunks: Chunks) -> None:
    """A ``.safetensors`` file with one float32 tensor ``embeddings`` of ``shape``, gathered in memory first."""
    import torch
    from safetensors.torch import save_file

    embeddings = torch.empty(shape, dtype=torch.float32)
    row = 0
    for _, chunk in chunks:
        embeddings[row : row + len(chunk)] = chunk
        row += len(chunk)
    save_file({"embeddings": embeddings}, path)


def write_jsonl(path: str, shape: tuple[int, int], chunks: Chunks) -> None:
    """One ``{"text": ..., "embedding": [...]}`` line per sentence, streamed (``shape`` is not needed)."""
    with open(path, "w", encoding="utf-8") as handle:
        for texts, embeddings in chunks:
            for text, row in zip(texts, embeddings.tolist(), strict=True):
                handle.write(json.dumps({"text": text, "embedding": row}, ensure_ascii=False) + "\n")


WRITERS: dict[str, Callable[[str, tuple[int, int], Chunks], None]] = {
    ".npy": write_npy,
    ".safetensors": write_safetensors,
    ".jsonl": write_jsonl,
}


def check_output(path: str, overwrite: bool, extensions: Iterable[str] = WRITERS) -> str:
    """OUTPUT's extension, once it is one of ``extensions``, OUTPUT can be written, and it exists only with
    ``overwrite``."""
    extension = file_extension(path, extensions, "OUTPUT")
    check_output_file(path, "OUTPUT")
    if os.path.exists(path) and not overwrite:
        raise UsageError(f"OUTPUT {path!r} exists; pass --overwrite to replace it")
    return extension


def process_is_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def own_transient_name(prefix: str, suffix: str) -> str:
    """The name of this process's transient file or folder, ``{prefix}.{host}.{pid}{suffix}``, which
    :func:`remove_stale` recognises once the process is gone."""
    return f"{prefix}.{socket.gethostname()}.{os.getpid()}{suffix}"


def remove_stale(directory: str, prefix: str, suffix: str) -> None:
    """Remove what killed runs left in ``directory`` under :func:`own_transient_name` names: those of this machine
    whose process is gone (a running one's, and another machine's, are kept); a note on stderr names each."""
    start = f"{prefix}.{socket.gethostname()}."
    for entry in os.listdir(directory):
        pid = entry.removeprefix(start).removesuffix(suffix)
        if entry.startswith(start) and entry.endswith(suffix) and pid.isdigit() and not process_is_alive(int(pid)):
            stale = os.path.join(directory, entry)
            if os.path.isdir(stale) and not os.path.islink(stale):
                shutil.rmtree(stale)
            else:
                os.remove(stale)
            print(f"note: removed {stale}, left by a run that was killed", file=sys.stderr)


@contextmanager
def replaced_on_success(path: str) -> Iterator[str]:
    """A temporary path beside ``path`` (hidden, named by this machine and process): renamed to ``path`` when the
    block succeeds, removed when it fails; those of killed runs for ``path`` are removed first."""
    directory, name = os.path.split(os.path.abspath(path))
    remove_stale(directory, f".{name}", ".partial")
    temporary = os.path.join(directory, own_transient_name(f".{name}", ".partial"))
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def encoded_chunks(
    encoder: Encoder, texts: Iterator[str], count: int, args: argparse.Namespace, progress: tqdm
) -> Iterator[tuple[list[str], torch.Tensor]]:
    """``args.chunk_size`` sentences at a time with their embeddings; INPUT no longer holding the ``count``
    sentences of the first pass is a UsageError (raised before a surplus chunk is encoded)."""
    done = 0
    for chunk in batched(texts, args.chunk_size):
        done += len(chunk)
        if done > count:
            break
        embeddings = encoder.encode(
            chunk,
            batch_size=args.batch_size,
            show_progress_bar=False,
            normalize=args.normalize,
            on_batch=progress.update,
        )
        yield chunk, embeddings
    if done != count:
        raise UsageError(f"INPUT {args.input!r} changed while being encoded ({count} sentences when first read)")


def build_parser() -> argparse.ArgumentParser:
    """The command line: MODEL INPUT OUTPUT and the options (help: this module's docstring)."""
    parser = argparse.ArgumentParser(
        prog="mixcse-encode", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", metavar="MODEL", help="model directory or Hub id")
    parser.add_argument("input", metavar="INPUT", help=f"sentences: {', '.join(INPUT_EXTENSIONS)}")
    parser.add_argument("output", metavar="OUTPUT", help=f"embeddings: {', '.join(WRITERS)}")
    parser.add_argument("--text_column", default="text", help="column (.csv/.tsv) or key (.jsonl) of the sentences")
    parser.add_argument("--batch_size", type=int, default=64, help="sentences per forward pass (default 64)")
    parser.add_argument(
        "--pooler",
        help="a pooler_type (run_mixcse.py --help lists them); default: the one a mixcse_hf checkpoint recorded, a "
        "sentence-transformers model's own pooling, else cls_before_pooler",
    )
    parser.add_argument(
        "--prompt",
        metavar="NAME",
        help="the model's prompt of that name put before each sentence, as sentence-transformers' prompt_name; "
        "default: its default prompt, if any",
    )
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="compute dtype; OUTPUT stays float32")
    parser.add_argument("--normalize", action="store_true", help="L2-normalise every embedding")
    parser.add_argument(
        "--padding_free", action="store_true", help="encode packed rows without pad tokens (same embeddings, faster)"
    )
    parser.add_argument(
        "--max_seq_length",
        type=int,
        help="truncation in tokens; default: a sentence-transformers model's max_seq_length, else the tokenizer's",
    )
    parser.add_argument(
        "--chunk_size",
        type=int,
        default=10000,
        help="sentences read and encoded at a time, which bounds memory (default 10000)",
    )
    parser.add_argument("--device", help="torch device; default: cuda (or another accelerator) if present, else cpu")
    add_backend_arguments(parser)
    parser.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is no terminal")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    return parser


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """--backend and --file_name, as mixcse-encode and mixcse-mine take them."""
    parser.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default="torch",
        help="torch runs the checkpoint; onnx and openvino a file mixcse-export wrote into MODEL (default torch)",
    )
    parser.add_argument(
        "--file_name",
        help="the exported file in MODEL's onnx/ or openvino/ folder, e.g. model_quint8_avx2.onnx (int8); "
        "default model.onnx / openvino_model.xml",
    )


def check_sizes(args: argparse.Namespace) -> None:
    """--batch_size, --chunk_size and --max_seq_length (when given) are at least 1."""
    for name in ("batch_size", "chunk_size", "max_seq_length"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be >= 1, got {value}")


def encode_command(argv: list[str]) -> None:
    """Check everything, load MODEL, count INPUT, then encode it chunk by chunk into OUTPUT; a summary on stderr."""
    args = build_parser().parse_args(argv)
    check_sizes(args)
    input_extension = check_input(args.input)
    write = WRITERS[check_output(args.output, args.overwrite)]
    from tqdm.auto import tqdm

    from mixcse_hf.models.backends import check_backend_options, load_backend_encoder, torch_only_options

    check_backend_options(
        args.model,
        args.backend,
        args.file_name,
        args.pooler,
        torch_only_options(args.dtype, args.device, args.padding_free),
    )
    show = args.progress or sys.stderr.isatty()
    encoder = load_backend_encoder(
        args.model,
        args.backend,
        args.file_name,
        args.pooler,
        args.dtype,
        args.device,
        args.max_seq_length,
        args.padding_free,
        args.prompt,
    )
    count = count_texts(args.input, input_extension, args.text_column)
    dimension = encoder.dimension
    start = time.perf_counter()
    with (
        tqdm(total=count, unit="sentence", desc="Encoding", disable=not show, file=sys.stderr) as progress,
        replaced_on_success(args.output) as temporary,
    ):
        texts = read_texts(args.input, input_extension, args.text_column)
        write(temporary, (count, dimension), encoded_chunks(encoder, texts, count, args, progress))
    seconds = time.perf_counter() - start
    print(
        f"encoded {count} sentence{'s' * (count != 1)} (d={dimension}) in {seconds:.1f} s "
        f"({count / seconds:.1f} sentences/s) -> {args.output}",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    """``mixcse-encode`` on ``argv`` (default ``sys.argv[1:]``) -> exit status (2: a one-line input error)."""
    return run_cli(encode_command, argv)


if __name__ == "__main__":
    sys.exit(main())

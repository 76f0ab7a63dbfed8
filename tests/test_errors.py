"""run_cli: the one-line error of a UsageError, also one raised in a DataLoader worker process."""

from __future__ import annotations

import pytest
import torch

from mixcse_hf.errors import UsageError, run_cli

BAD_BYTE = "train_file 'corpus.txt' is not valid UTF-8 (line 70001: invalid start byte); re-encode it"


class FailingRows(torch.utils.data.IterableDataset):
    """Two rows, then the error the streamed text reader raises at a bad byte past the first MiB."""

    def __iter__(self):
        yield from ("one .", "two .")
        try:
            b"\xff".decode("utf-8")
        except UnicodeDecodeError as err:  # chained, as the reader raises it
            raise UsageError(BAD_BYTE) from err


def test_a_usage_error_in_a_dataloader_worker_is_its_own_one_line(capsys: pytest.CaptureFixture) -> None:
    """torch re-raises a worker's exception as "Caught UsageError in DataLoader worker process 0" with the worker's
    traceback; the command prints only the original message."""

    def body(argv: list[str]) -> None:
        for _ in torch.utils.data.DataLoader(FailingRows(), batch_size=1, num_workers=1):
            pass

    assert run_cli(body, []) == 2
    assert capsys.readouterr().err == f"error: {BAD_BYTE}\n"


def test_a_usage_error_in_the_process_is_printed_as_it_is(capsys: pytest.CaptureFixture) -> None:
    def body(argv: list[str]) -> None:
        raise UsageError("Caught you: a message of the user's own wording")

    assert run_cli(body, []) == 2
    assert capsys.readouterr().err == "error: Caught you: a message of the user's own wording\n"

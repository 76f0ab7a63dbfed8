"""Publish a saved model folder (a run's output_dir or one of its checkpoints) to the Hub.

    mixcse-push PATH REPO_ID [--private] [--revision BRANCH] [--commit_message TEXT] [--export]

(also ``python -m mixcse_hf.cli.push``). The folder is uploaded as its save wrote it, less the run's records
(Trainer state, run record, resolved config, results); the model card is rendered for REPO_ID in the upload, and
nothing in the folder changes but for --export, which first writes the ONNX files (float32 and int8, as
mixcse-export PATH --int8; files still fresh are kept), then uploaded with the rest; an exported file that is stale
stops the push. The token comes from ``huggingface-cli login`` or ``HF_TOKEN``.
"""

from __future__ import annotations

import argparse
import sys

from mixcse_hf.errors import run_cli


def push_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="mixcse-push", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", help="a run's output_dir or one of its checkpoint-* folders")
    parser.add_argument("repo_id", help="Hub repository, e.g. your-name/mixcse-bert-base")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="branch to push to")
    parser.add_argument("--commit_message")
    parser.add_argument(
        "--export", action="store_true", help="export onnx/model.onnx and its int8 file first (mixcse-export --int8)"
    )
    args = parser.parse_args(argv)
    from mixcse_hf.hub.push import check_model_folder, push_model_folder
    from mixcse_hf.training.run_dir import CARD_DATA_FILE, UPLOAD_IGNORE_PATTERNS, read_card_data

    check_model_folder(args.path)
    if args.export:
        from mixcse_hf.cli.export import export_folder, requested_kinds

        print("\n".join(export_folder(args.path, requested_kinds(int8=True, openvino=False), keep_fresh=True)))
    card = read_card_data(args.path)
    if card is None:
        print(f"note: {args.path} has no {CARD_DATA_FILE}: its README.md is uploaded as it is")
    url = push_model_folder(
        args.path, args.repo_id, card, UPLOAD_IGNORE_PATTERNS, args.private, args.revision, args.commit_message
    )
    print(url)


def main(argv: list[str] | None = None) -> int:
    return run_cli(push_command, argv)


if __name__ == "__main__":
    sys.exit(main())

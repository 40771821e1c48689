"""The `cclm-hf` command line: each subcommand is one `_add_<name>_parser` (arguments, help, examples; listed in
`SUBCOMMANDS`) that sets `func`, a thin function calling the library. `main` turns bad input (`CCLMUserError`, missing or unreadable files)
into one line on stderr and exit status 1; bad arguments exit with status 2, also in one line.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .configuration_cclm import CCLM_PRESETS, CCLMConfig
from .conversion import CONVERSION_TARGETS, config_from_original_files, convert_checkpoint_to_folder, with_image_size
from .errors import CCLMUserError


def _command_parser(
    subparsers: argparse._SubParsersAction, name: str, help: str, description: str, examples: str, notes: str = ""
) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with `notes` and `examples` (one command per line), laid out as written."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=f"{notes}examples:\n{examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


_CONVERT_NOTES = """\
architectures (--preset):
  cclm-base       Swin-B 224 px / window 7 + 12-layer XLM-R-large-width stack (6 fusion layers): the CCLM-3M/4M
                  pre-training checkpoints
  cclm-base-384   the same at 384 px / window 12, the resolution of every original fine-tuning config
  cclm-tiny       the tiny demo architecture (64 px, 64-wide text stack; not a released checkpoint)

heads (--head):
  base            CCLMModel: encoders, projections, temperature (AutoModel)
  retrieval       CCLMForImageTextRetrieval: + ITM head (from pre-training or retrieval checkpoints)
  classification  CCLMForSequenceClassification: + MLP classifier (XVNLI checkpoints; from a pre-training
                  checkpoint the classifier is newly initialised)
  nlvr            CCLMForImagesAndTextClassification: two images per statement (NLVR2 / MaRVL checkpoints with
                  their 18-layer paired stack, or NLVR domain pre-training; from a pre-training checkpoint each
                  fusion layer is duplicated into its left/right pair and the classifier is new)
  vqa             CCLMForQuestionAnswering: + causal answer decoder (xGQA / VQA checkpoints with text_decoder.*;
                  from a pre-training checkpoint the decoder is a copy of the fusion layers, embeddings and MLM
                  head; the depth comes from the yaml's num_dec_layers, 6 by default)
  pretraining     CCLMForPreTraining: + ITM, box and MLM heads (pre-training checkpoints)

--image-size N resizes every Swin relative-position bias table with the original's geometric-progression bicubic
scheme (e.g. a 224 px pre-training checkpoint -> 384 px, window 12, as the original fine-tuning scripts load it).

"""
_CONVERT_EXAMPLES = """\
  cclm-hf convert cclm_4m_epoch_29.th out/cclm-4m --preset cclm-base --head retrieval --tokenizer xlm-roberta-large
  cclm-hf convert cclm_4m_epoch_29.th out/cclm-4m-384 --preset cclm-base --image-size 384 --head classification \\
      --num-labels 3
  cclm-hf convert model.th out/x --original-config configs/Pretrain_4m.yaml --vision-config configs/swin.json \\
      --text-config data/xlm-roberta-large
"""


def _add_convert_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = _command_parser(
        subparsers,
        "convert",
        help="convert an original CCLM checkpoint into a transformers model folder",
        description="Convert an original CCLM checkpoint ({'model': state_dict, ...} .th/.pth file, bare state dict, "
        "or .safetensors) into a save_pretrained folder (safetensors) with conversion.json and a model card.",
        examples=_CONVERT_EXAMPLES,
        notes=_CONVERT_NOTES,
    )
    parser.add_argument("checkpoint", help="original checkpoint file")
    parser.add_argument("output_dir", help="folder to write the model (and processor) to")
    architecture = parser.add_mutually_exclusive_group(required=True)
    architecture.add_argument("--preset", choices=sorted(CCLM_PRESETS), help="a released architecture")
    architecture.add_argument("--original-config", help="the original task yaml (e.g. configs/Pretrain_4m.yaml)")
    parser.add_argument("--vision-config", help="Swin json; defaults to the yaml's vision_config entry")
    parser.add_argument("--text-config", help="XLM-R folder or config.json; defaults to the yaml's text_encoder")
    parser.add_argument("--head", choices=sorted(CONVERSION_TARGETS), default="retrieval", help="target model")
    parser.add_argument("--num-labels", type=int, help="classes of the classification head (XVNLI: 3)")
    parser.add_argument("--image-size", type=int, help="target resolution; resizes the relative position biases")
    parser.add_argument("--window-size", type=int, help="target Swin window (default: scaled with the image size)")
    parser.add_argument("--tokenizer", help="XLM-R tokenizer folder or Hub name: also write a CCLMProcessor")
    parser.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> None:
    if args.preset:
        if args.vision_config or args.text_config:
            raise CCLMUserError("--vision-config/--text-config go with --original-config, not --preset")
        overrides = {"num_labels": args.num_labels} if args.num_labels else {}
        config = CCLMConfig.from_preset(args.preset, **overrides)
        architecture = f"preset `{args.preset}`"
    else:
        config = config_from_original_files(
            args.original_config, args.vision_config, args.text_config, args.num_labels
        )
        architecture = f"from the original config `{Path(args.original_config).name}`"
    if args.image_size or args.window_size:
        config = with_image_size(config, args.image_size or config.image_size, args.window_size)
        architecture += f" at {config.image_size} px, window {config.vision_config.window_size}"
    convert_checkpoint_to_folder(
        args.checkpoint,
        args.output_dir,
        config,
        args.head,
        architecture=architecture,
        tokenizer=args.tokenizer,
        command=args.command_line,
    )
    print(f"wrote {args.output_dir}: model, conversion.json, README.md" + (", processor" if args.tokenizer else ""))


def _add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = _command_parser(
        subparsers,
        "demo",
        help='pre-train a tiny CCLM on "multilingual shapes" and measure cross-lingual retrieval',
        description="Generate the multilingual shapes data, pre-train a tiny CCLM under a time budget on English "
        "captions + parallel sentences, then report text->image / image->text recall per language (en, de, fr, es, "
        "zh). Writes metrics.json, metrics.md, loss_curve.png, recall_per_language.png and a model folder.",
        examples="""\
  cclm-hf demo                                   # 6 minutes of pre-training on 2 CPU cores, outputs/demo
  cclm-hf demo --budget-s 60 --output-dir outputs/demo-1min
  cclm-hf demo --no-parallel-text --output-dir outputs/ablation
""",
    )
    parser.add_argument("--output-dir", default="outputs/demo")
    parser.add_argument("--budget-s", type=float, default=360.0, help="seconds of pre-training (default 360)")
    parser.add_argument(
        "--no-parallel-text", dest="parallel_text", action="store_false", help="ablation: no parallel sentences"
    )
    parser.add_argument(
        "--no-concept-ids",
        dest="concept_ids",
        action="store_false",
        help="the original's recipe: images of one concept count as each other's negatives",
    )
    parser.add_argument(
        "--constant-lr",
        dest="lr_decay",
        action="store_false",
        help="keep the learning rate constant after the warm-up (default: linear decay to 0 at the end of the budget)",
    )
    parser.add_argument(
        "--rotation-degrees",
        type=float,
        default=None,
        help="range of the random rotation of squares, triangles and crosses (default 40: +-20 degrees; 360: any)",
    )
    parser.add_argument(
        "--caption-languages",
        default="en",
        help="comma-separated languages of the image captions (default en: the other languages only in parallel "
        "sentences; e.g. en,de,fr,es,zh for captions in every language, as in the original's translated data)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="pairs per image step and per parallel-text step (default 48; 64 makes fewer steps in 6 minutes)",
    )
    parser.add_argument(
        "--window-size",
        type=int,
        default=None,
        help="Swin attention window of the demo model (default 4; 8: the last stage is one window, and re-ranking "
        "only ties with the contrastive ranking in 6 minutes)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> None:
    from .demo.run import DemoConfig, run_demo, summary_line

    config = DemoConfig(
        output_dir=args.output_dir,
        budget_s=args.budget_s,
        parallel_text=args.parallel_text,
        concept_ids=args.concept_ids,
        lr_decay=args.lr_decay,
        rotation_degrees=DemoConfig.rotation_degrees if args.rotation_degrees is None else args.rotation_degrees,
        caption_languages=tuple(language.strip() for language in args.caption_languages.split(",")),
        batch_size=DemoConfig.batch_size if args.batch_size is None else args.batch_size,
        window_size=DemoConfig.window_size if args.window_size is None else args.window_size,
        seed=args.seed,
        num_threads=args.threads,
    )
    metrics = run_demo(config)
    print((Path(args.output_dir) / "metrics.md").read_text())
    print(summary_line(metrics))
    print(f"artefacts in {args.output_dir}: metrics.json, metrics.md, loss_curve.png, recall_per_language.png, model/")


def _add_push_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = _command_parser(
        subparsers,
        "push",
        help="upload a model folder (model, processor, card, metrics) to the Hugging Face Hub in one commit",
        description="Create the Hub repository if needed and upload every file of FOLDER (except hidden files and "
        "Trainer checkpoint-* folders) in one commit. The folder's README.md card is checked first (cclm-hf card "
        "writes one). Needs a token: `hf auth login` or HF_TOKEN.",
        examples="""\
  cclm-hf push out/cclm-4m my-user/cclm-4m
  cclm-hf push out/cclm-4m-xvnli my-org/cclm-4m-xvnli --private --revision v1 --commit-message "XVNLI, seed 0"
""",
    )
    parser.add_argument("folder", help="a saved model folder with a README.md card")
    parser.add_argument("repo_id", help="the Hub repository, user/name or org/name")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", help="branch to commit to (created from main if missing)")
    parser.add_argument("--commit-message", help='default: "Upload <model class> with cclm-hf <version>"')
    parser.set_defaults(func=_run_push)


def _run_push(args: argparse.Namespace) -> None:
    from .hub import push_folder

    commit = push_folder(
        args.folder,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
    )
    print(f"uploaded {args.folder} to {args.repo_id}: {commit.commit_url}")


def _add_card_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = _command_parser(
        subparsers,
        "card",
        help="(re)write or check the model card (README.md) of a model folder",
        description="Write FOLDER/README.md from the folder's config.json and, when present, conversion.json "
        "(written by cclm-hf convert: source file hash, command, parity evidence), metrics.json (written by the "
        "benchmark recipes: model-index eval results and the paper's numbers beside ours) and training_args.json. "
        "The 'How this model was produced' section of an existing card is kept. Every card is checked offline "
        "(front matter, license, languages, model-index) before it is written.",
        examples="""\
  cclm-hf card out/cclm-4m
  cclm-hf card out/cclm-4m-xvnli --license bsd-3-clause --repo-id my-org/cclm-4m-xvnli
  cclm-hf card out/cclm-4m-xvnli --check        # only check the README.md that is there
""",
    )
    parser.add_argument("folder", help="a saved model folder")
    parser.add_argument("--license", help="Hub license id (default: bsd-3-clause for converted checkpoints)")
    parser.add_argument("--repo-id", help="the name the usage snippet loads the model by (default: folder name)")
    parser.add_argument("--model-name", help="the model's name in model-index (default: the repo name)")
    parser.add_argument("--check", action="store_true", help="check FOLDER/README.md without rewriting it")
    parser.set_defaults(func=_run_card)


def _run_card(args: argparse.Namespace) -> None:
    from .model_card import validate_model_card, write_folder_card

    if args.check:
        card = Path(args.folder) / "README.md"
        if not card.is_file():
            raise CCLMUserError(f"{card}: no model card to check")
        validate_model_card(card.read_text(encoding="utf-8"), source=str(card))
        print(f"{card}: valid")
        return
    path = write_folder_card(args.folder, license=args.license, repo=args.repo_id, model_name=args.model_name)
    print(f"wrote {path}")


def _add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = _command_parser(
        subparsers,
        "export",
        help="export a model folder for serving (onnx)",
        description="Export a model folder for serving; one sub-command per format.",
        examples="  cclm-hf export onnx out/cclm-4m out/cclm-4m-onnx\n",
    )
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    onnx = _command_parser(
        formats,
        "onnx",
        help="image encoder, text encoder and ITM scorer as ONNX graphs",
        description="Export image_encoder.onnx (pixel_values -> normalized image_embeds, image_tokens), "
        "text_encoder.onnx (input_ids, attention_mask -> normalized text_embeds, text_states) and, for models "
        "with the matching head, itm_scorer.onnx (image_tokens, text_states, text_attention_mask -> itm_logits), "
        "with dynamic batch and text-length axes, plus the processor and onnx_export.json. Each graph is checked "
        "with onnxruntime against PyTorch (max abs difference printed). Needs pip install 'cclm-hf[onnx]'.",
        examples="""\
  cclm-hf export onnx out/cclm-4m out/cclm-4m-onnx
  cclm-hf export onnx outputs/demo/model outputs/demo/onnx --opset 18
""",
    )
    onnx.add_argument("folder", help="a saved CCLMModel, retrieval or pre-training folder")
    onnx.add_argument("output_dir", help="folder to write the graphs to")
    onnx.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    onnx.add_argument("--no-verify", dest="verify", action="store_false", help="skip the onnxruntime check")
    onnx.set_defaults(func=_run_export_onnx)


def _run_export_onnx(args: argparse.Namespace) -> None:
    from .onnx_export import export_onnx

    export = export_onnx(args.folder, args.output_dir, opset=args.opset, verify=args.verify)
    for graph in export.graphs.values():
        check = (
            "" if graph.max_abs_diff is None else f" (onnxruntime vs PyTorch: max abs diff {graph.max_abs_diff:.2e})"
        )
        print(f"{Path(args.output_dir) / graph.file}: {', '.join(graph.inputs)} -> {', '.join(graph.outputs)}{check}")


def _add_search_parsers(subparsers: argparse._SubParsersAction) -> None:
    index_parser = _command_parser(
        subparsers,
        "index",
        help="build a search index over a folder of images",
        description="Search indexes of images (see `cclm-hf index build --help`).",
        examples="  cclm-hf index build photos/ photos.index --model out/cclm-4m\n",
    )
    index_actions = index_parser.add_subparsers(dest="index_command", required=True)
    build = _command_parser(
        index_actions,
        "build",
        help="embed the images of a folder into an index directory (resumable)",
        description="Embed every image file under IMAGES_DIR into INDEX_DIR (safetensors shards + index.json). Run "
        "again with the same folders to resume an interrupted build or to add new images.",
        examples="""\
  cclm-hf index build photos/ photos.index --model out/cclm-4m
  cclm-hf index build photos/ photos.index --model out/cclm-4m --dtype float16 --on-error skip
""",
    )
    build.add_argument("images_dir", help="folder of images (searched recursively)")
    build.add_argument("index_dir", help="index directory (created; an existing index there is continued)")
    build.add_argument("--model", required=True, help="CCLM model folder or Hub name (with its processor)")
    build.add_argument("--batch-size", type=int, default=32)
    build.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="storage dtype (default float32)")
    build.add_argument(
        "--no-rerank-states",
        dest="store_rerank_states",
        action="store_false",
        default=None,
        help="do not keep the image tokens for ITM re-ranking (smaller index; search without --rerank itm)",
    )
    build.add_argument(
        "--on-error", choices=["raise", "skip"], default="raise", help="unreadable images: stop, or skip and count"
    )
    build.add_argument("--shard-size", type=int, default=1024, help="images per shard file")
    build.add_argument("--device", help="torch device (default: cuda if available)")
    build.set_defaults(func=_run_index_build)

    search = _command_parser(
        subparsers,
        "search",
        help="search an index with text queries in any language",
        description="Print the best images of INDEX_DIR for each query: contrastive top-k, optionally re-ranked by "
        "the matching head (--rerank itm: the CCLM paper's rule; itm+itc: LAVIS's).",
        examples="""\
  cclm-hf search photos.index "a dog in the snow" --k 5 --rerank itm
  cclm-hf search photos.index "ein Hund im Schnee" "一只在雪地里的狗" --json
  cclm-hf search photos.index "un chien dans la neige" --html results.html
""",
    )
    search.add_argument("index_dir")
    search.add_argument("queries", nargs="+", help="text queries (image paths for a caption index)")
    search.add_argument("--k", type=int, default=5, help="results per query")
    search.add_argument("--rerank", choices=["itm", "itc", "itm+itc"], help="second-stage scoring rule")
    search.add_argument(
        "--rerank-k", type=int, help="candidates per query the matching head re-scores (default: max(k, 128))"
    )
    search.add_argument("--backend", choices=["torch", "faiss"], default="torch", help="exact nearest neighbours")
    search.add_argument("--model", help="model to search with (default: the one recorded in the index)")
    search.add_argument("--device", help="torch device (default: cuda if available)")
    search.add_argument("--json", action="store_true", help="print the results as JSON")
    search.add_argument("--html", metavar="OUT.html", help="also write a page with the top images as thumbnails")
    search.set_defaults(func=_run_search)


def _run_index_build(args: argparse.Namespace) -> None:
    from .search.index import CCLMIndex
    from .search.loading import load_model_and_processor

    model, processor = load_model_and_processor(args.model, args.device)
    index = CCLMIndex.create(
        model,
        processor,
        "image",
        args.index_dir,
        dtype=args.dtype,
        store_rerank_states=args.store_rerank_states,
        shard_size=args.shard_size,
    )
    report = index.add_folder(args.images_dir, on_error=args.on_error, batch_size=args.batch_size)
    for image_id, reason in report.skipped:
        print(f"skipped {image_id}: {reason}")
    print(
        f"{args.index_dir}: {len(index)} images ({report.added} added, {report.already_indexed} already indexed, "
        f"{len(report.skipped)} unreadable skipped)"
    )


def _run_search(args: argparse.Namespace) -> None:
    import json

    from .search.loading import open_index
    from .search.report import format_results_table, results_as_records, write_results_html

    index = open_index(args.index_dir, args.model, args.device)
    results = index.search(args.queries, k=args.k, rerank=args.rerank, rerank_k=args.rerank_k, backend=args.backend)
    if args.json:
        print(json.dumps(results_as_records(args.queries, results), ensure_ascii=False, indent=2))
    else:
        print(format_results_table(args.queries, results))
    if args.html:
        write_results_html(args.html, args.queries, results, index)
        print(f"wrote {args.html}", file=sys.stderr if args.json else sys.stdout)


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_convert_parser,
    _add_demo_parser,
    _add_push_parser,
    _add_card_parser,
    _add_export_parser,
    _add_search_parsers,
)


class _OneLineErrorParser(argparse.ArgumentParser):
    """Bad arguments end in one line naming the command and the problem (argparse prints the usage too)."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrorParser(
        prog="cclm-hf",
        description="CCLM for the Hugging Face ecosystem",
        epilog="run cclm-hf COMMAND --help for the options and examples of each command",
    )
    parser.add_argument("--version", action="version", version=f"cclm-hf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["cclm-hf", *argv])
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity(logging.DEBUG if args.verbose else logging.INFO)
    try:
        args.func(args)
    except (CCLMUserError, OSError) as error:  # bad input: files, folders, arguments, the Hub's answer
        if args.verbose:
            raise
        print(f"cclm-hf {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

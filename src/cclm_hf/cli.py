"""The `cclm-hf` command line: thin wrappers that parse arguments and call the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .configuration_cclm import CCLM_PRESETS, CCLMConfig
from .conversion import CONVERSION_TARGETS, config_from_original_files, convert_original_checkpoint, with_image_size
from .model_card import write_model_card


_CONVERT_EPILOG = """\
architectures (--preset):
  cclm-base       Swin-B 224 px / window 7 + 12-layer XLM-R-large-width stack (6 fusion layers): the CCLM-3M/4M
                  pre-training checkpoints
  cclm-base-384   the same at 384 px / window 12, the resolution of every original fine-tuning config

heads (--head):
  base            CCLMModel: encoders, projections, temperature (AutoModel)
  retrieval       CCLMForImageTextRetrieval: + ITM head (from pre-training or retrieval checkpoints)
  classification  CCLMForSequenceClassification: + MLP classifier (XVNLI checkpoints; from a pre-training
                  checkpoint the classifier is newly initialised)

--image-size N resizes every Swin relative-position bias table with the original's geometric-progression bicubic
scheme (e.g. a 224 px pre-training checkpoint -> 384 px, window 12, as the original fine-tuning scripts load it).

examples:
  cclm-hf convert cclm_4m_epoch_29.th out/cclm-4m --preset cclm-base --head retrieval --tokenizer xlm-roberta-large
  cclm-hf convert cclm_4m_epoch_29.th out/cclm-4m-384 --preset cclm-base --image-size 384 --head classification \\
      --num-labels 3
  cclm-hf convert model.th out/x --original-config configs/Pretrain_4m.yaml --vision-config configs/swin.json \\
      --text-config data/xlm-roberta-large
"""


def _add_convert_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an original CCLM checkpoint into a transformers model folder",
        description="Convert an original CCLM checkpoint ({'model': state_dict, ...} .th/.pth file, bare state dict, "
        "or .safetensors) into a save_pretrained folder (safetensors).",
        epilog=_CONVERT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
            raise SystemExit("--vision-config/--text-config go with --original-config, not --preset")
        overrides = {"num_labels": args.num_labels} if args.num_labels else {}
        config = CCLMConfig.from_preset(args.preset, **overrides)
    else:
        config = config_from_original_files(
            args.original_config, args.vision_config, args.text_config, args.num_labels
        )
    if args.image_size or args.window_size:
        config = with_image_size(config, args.image_size or config.image_size, args.window_size)

    model, report = convert_original_checkpoint(args.checkpoint, config, head=args.head)
    model.save_pretrained(args.output_dir)
    provenance = (
        f"Converted with `cclm-hf convert` from the original CCLM checkpoint `{Path(args.checkpoint).name}` "
        f"(target head `{args.head}`; {len(report.resized)} relative position bias tables resized to window "
        f"{config.vision_config.window_size}; newly initialised: {report.newly_initialized or 'nothing'}). "
        "The conversion is checked against tensors produced by the original implementation."
    )
    write_model_card(model, args.output_dir, provenance)
    logging.getLogger(__name__).info(
        "wrote %s to %s (%d tables resized, %d parameters newly initialised)",
        type(model).__name__,
        args.output_dir,
        len(report.resized),
        len(report.newly_initialized),
    )
    if args.tokenizer:
        from transformers import AutoTokenizer

        from .image_processing_cclm import CCLMImageProcessor
        from .processing_cclm import CCLMProcessor

        image_processor = CCLMImageProcessor(size={"height": config.image_size, "width": config.image_size})
        CCLMProcessor(image_processor, AutoTokenizer.from_pretrained(args.tokenizer)).save_pretrained(args.output_dir)


def _add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help='pre-train a tiny CCLM on "multilingual shapes" and measure cross-lingual retrieval',
        description="Generate the multilingual shapes data, pre-train a tiny CCLM under a time budget on English "
        "captions + parallel sentences, then report text->image / image->text recall per language (en, de, fr, es, "
        "zh). Writes metrics.json, metrics.md, loss_curve.png, recall_per_language.png and a model folder.",
    )
    parser.add_argument("--output-dir", default="outputs/demo")
    parser.add_argument("--budget-s", type=float, default=360.0, help="seconds of pre-training (default 360)")
    parser.add_argument(
        "--no-parallel-text", dest="parallel_text", action="store_false", help="ablation: no parallel sentences"
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
        seed=args.seed,
        num_threads=args.threads,
    )
    metrics = run_demo(config)
    print((Path(args.output_dir) / "metrics.md").read_text())
    print(summary_line(metrics))
    print(f"artefacts in {args.output_dir}: metrics.json, metrics.md, loss_curve.png, recall_per_language.png, model/")


def _add_search_parsers(subparsers: argparse._SubParsersAction) -> None:
    index_parser = subparsers.add_parser("index", help="build a search index over a folder of images")
    index_actions = index_parser.add_subparsers(dest="index_command", required=True)
    build = index_actions.add_parser(
        "build",
        help="embed the images of a folder into an index directory (resumable)",
        description="Embed every image file under IMAGES_DIR into INDEX_DIR (safetensors shards + index.json). Run "
        "again with the same folders to resume an interrupted build or to add new images.",
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

    search = subparsers.add_parser(
        "search",
        help="search an index with text queries in any language",
        description="Print the best images of INDEX_DIR for each query: contrastive top-k, optionally re-ranked by "
        "the matching head (--rerank itm: the CCLM paper's rule; itm+itc: LAVIS's).",
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cclm-hf", description="CCLM for the Hugging Face ecosystem")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_convert_parser(subparsers)
    _add_demo_parser(subparsers)
    _add_search_parsers(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity(logging.DEBUG if args.verbose else logging.INFO)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

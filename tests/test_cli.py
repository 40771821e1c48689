"""The `cclm-hf` command as a new user meets it: help for every subcommand, --version, and bad input that ends in
one line naming the file, with a non-zero exit status and no traceback."""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

import cclm_hf
from cclm_hf.cli import SUBCOMMANDS, build_parser
from cclm_hf.cli import main as cli_main


SUBCOMMAND_NAMES = ("convert", "demo", "push", "card", "export", "index", "search")


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cclm_hf.cli", *argv], capture_output=True, text=True)


def test_help_lists_every_subcommand():
    result = _run("--help")
    assert result.returncode == 0
    for name in SUBCOMMAND_NAMES:
        assert f"\n    {name} " in result.stdout, name
    parsers = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    assert sorted(parsers.choices) == sorted(SUBCOMMAND_NAMES) and len(SUBCOMMANDS) <= len(SUBCOMMAND_NAMES)


@pytest.mark.parametrize(
    "argv",
    [
        ["convert"],
        ["demo"],
        ["push"],
        ["card"],
        ["export"],
        ["export", "onnx"],
        ["index"],
        ["index", "build"],
        ["search"],
    ],
)
def test_each_subcommand_help_has_examples(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*argv, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"cclm-hf {' '.join(argv)} " in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"cclm-hf {cclm_hf.__version__}"


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["convert", "x.th"], "the following arguments are required: output_dir"),
        (["convert", "x.th", "out", "--preset", "cclm-huge"], "invalid choice: 'cclm-huge'"),
        (["export", "pdf", "a", "b"], "invalid choice: 'pdf'"),
    ],
)
def test_bad_arguments_end_in_one_line(argv, problem, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and problem in error and "--help" in error


def _truncated_safetensors(path):
    save_file({"weight": torch.zeros(64, 64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _text_file(path):
    path.write_text("These are my notes, not a checkpoint.\n")


def _truncated_torch_file(path):
    torch.save({"model": {"weight": torch.zeros(64, 64)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


class _Anything:
    pass


def _pickle_with_objects(path):
    with open(path, "wb") as handle:
        pickle.dump({"model": {}, "args": _Anything()}, handle, protocol=2)


@pytest.mark.parametrize(
    "name, make, problem",
    [
        ("model.safetensors", _truncated_safetensors, "not a readable safetensors file"),
        ("model.th", _text_file, "not a torch checkpoint (torch files are zip archives or binary pickles"),
        ("model.th", _truncated_torch_file, "damaged or truncated torch checkpoint"),
        ("model.th", _pickle_with_objects, "refusing to unpickle"),
        ("missing.th", None, "checkpoint not found"),
    ],
    ids=["truncated-safetensors", "text-file", "truncated-torch", "code-bearing-pickle", "missing"],
)
def test_convert_bad_input_is_one_line_naming_the_file(tmp_path, capsys, name, make, problem):
    path = tmp_path / name
    if make:
        make(path)
    assert cli_main(["convert", str(path), str(tmp_path / "out"), "--preset", "cclm-base"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("cclm-hf convert: error: ") and str(path) in error
    assert problem in error
    if make is _text_file:  # not misreported as a pickle that needs unsafe loading
        assert "unpickle" not in error and "execute code" not in error
    assert not (tmp_path / "out").exists()


def test_a_new_process_prints_only_the_error_line(tmp_path):
    path = tmp_path / "model.th"
    _text_file(path)
    result = _run("convert", str(path), str(tmp_path / "out"), "--preset", "cclm-base")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"cclm-hf convert: error: {path}: not a torch checkpoint (torch files are zip archives or binary pickles; "
        "this file starts with b'These ar')\n"
    )


def test_bad_original_config_names_the_file(tmp_path, capsys):
    checkpoint = tmp_path / "model.th"
    torch.save({"model": {}}, checkpoint)
    yaml_file = tmp_path / "Pretrain.yaml"
    yaml_file.write_text("vision_config: [unclosed\n")
    assert cli_main(["convert", str(checkpoint), str(tmp_path / "o"), "--original-config", str(yaml_file)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{yaml_file}: not valid yaml" in error
    assert (
        cli_main(["convert", str(checkpoint), str(tmp_path / "o"), "--preset", "cclm-base", "--image-size", "100"])
        == 1
    )
    assert "image_size=100 must be a multiple of the total Swin stride 32" in capsys.readouterr().err


def test_verbose_keeps_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.th"):
        cli_main(["-v", "convert", str(tmp_path / "missing.th"), str(tmp_path / "out"), "--preset", "cclm-base"])

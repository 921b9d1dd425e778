"""Flags derived from the option objects: every field has one, with its default and help."""

import argparse
import dataclasses

import pytest

from model.commands import build_parser
from model.commands.arguments import add_options, options_from
from model.options import SERVING, PostprocessOptions
from model.train import TrainConfig


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


def test_train_flags_round_trip_the_whole_config():
    parser = subcommand("train")
    defaults = options_from(TrainConfig, parser.parse_args(["--data-root", "d"]))
    assert defaults == TrainConfig(data_root="d")
    changed = {
        "--data-root": "d",
        "--publish": "w/mine.safetensors",
        "--lr-steps": ["10", "20"],
        "--no-amp": None,
        "--freeze-bn": None,
        "--clip-grad-norm": "5",
        "--iterations": "7",
    }
    argv = []
    for flag, value in changed.items():
        argv += [flag, *([value] if isinstance(value, str) else value or [])]
    config = options_from(TrainConfig, parser.parse_args(argv))
    assert config.publish == "w/mine.safetensors"
    assert config.lr_steps == [10, 20]
    assert config.amp is False
    assert config.freeze_bn is True
    assert config.clip_grad_norm == 5.0
    assert config.iterations == 7


def test_every_train_option_has_help_with_its_default():
    help_text = " ".join(subcommand("train").format_help().split())
    for field in dataclasses.fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in help_text, field.name
    assert "(default: 240000)" in help_text
    assert "(default: 1/2 and 3/4 of --iterations)" in help_text


@pytest.mark.parametrize("command", ["detect", "eval", "bench"])
def test_every_flag_has_help(command):
    for action in subcommand(command)._actions:
        assert action.help, f"{command} {action.option_strings}"


def test_a_preset_replaces_the_class_defaults():
    parser = argparse.ArgumentParser()
    add_options(parser, PostprocessOptions, defaults=SERVING)
    assert options_from(PostprocessOptions, parser.parse_args([])) == SERVING
    assert "(default: 0.5)" in parser.format_help()


def test_required_fields_are_required_flags():
    parser = argparse.ArgumentParser()
    add_options(parser, TrainConfig, only=("data_root",))
    with pytest.raises(SystemExit):
        parser.parse_args([])

"""The ``t2r`` command as a porter meets it: gin imports, usage, help, --num_threads."""

from __future__ import annotations

import os
import re
import sys

import gin
import pytest
import torch

from t2r import cli
from t2r.bin import gin_config


@pytest.fixture
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture
def console_script_path(monkeypatch, tmp_path):
    """sys.path as the ``t2r`` console script has it: without the working directory."""
    cwd = os.getcwd()
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", cwd, str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_gin_imports_modules_from_the_working_directory(console_script_path, clean_gin):
    package = console_script_path / "my_port"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text("def make_thing(size=1):\n    return size\n")
    config = console_script_path / "port.gin"
    config.write_text("import my_port.models\n\nmake_thing.size = 3\n")
    try:
        gin_config.parse([str(config)])
        assert "my_port.models" in sys.modules
        assert gin_config.bound_value("make_thing.size") == 3
    finally:
        for name in ("my_port.models", "my_port"):
            sys.modules.pop(name, None)


def test_a_failing_gin_import_names_the_file_and_the_module(console_script_path, clean_gin):
    config = console_script_path / "broken.gin"
    config.write_text("import no_such_module_for_t2r.models\n")
    with pytest.raises(ImportError) as info:
        gin_config.parse([str(config)])
    message = str(info.value)
    assert str(config) in message
    assert "'import no_such_module_for_t2r.models' failed" in message
    assert str(console_script_path) in message  # where it looked


def test_train_without_configs_prints_usage(capsys):
    assert cli.main(["train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: t2r train")
    assert "no --gin_configs given" in err


@pytest.mark.parametrize(
    "command, example",
    [
        ("train", '--gin_bindings="train_eval_model.max_train_steps = 200"'),
        ("collect", '--gin_bindings="collect_eval_loop.num_collect = 500"'),
    ],
)
def test_help_describes_the_command_with_a_binding_that_fits_it(command, example, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert example in out
    assert f"t2r {command} --gin_configs=pose_env_run_" in out
    target = "train_eval_model" if command == "train" else "collect_eval_loop"
    assert re.search(rf"binds? {target}", " ".join(out.split()))
    other = "collect_eval_loop" if command == "train" else "train_eval_model"
    assert other not in out  # no binding example that belongs to the other command
    assert "--num_threads N" in out


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("command", ["train", "collect"])
def test_num_threads_flag_and_env_var(command, monkeypatch, restore_threads):
    seen = []

    def fake_run(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return {}

    from t2r.bin import run_collect_eval, run_t2r_trainer

    monkeypatch.setattr(run_t2r_trainer, "run", fake_run)
    monkeypatch.setattr(run_collect_eval, "run", fake_run)
    monkeypatch.delenv(cli.NUM_THREADS_ENV, raising=False)
    argv = [command, "--gin_configs=x.gin"] + (["--root_dir=r"] if command == "collect" else [])
    torch.set_num_threads(2)
    assert cli.main([*argv, "--num_threads=1"]) == 0
    monkeypatch.setenv(cli.NUM_THREADS_ENV, "3")
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--num_threads=1"]) == 0  # the flag wins over the variable
    assert seen == [1, 3, 1]
    with pytest.raises(SystemExit, match="must be >= 1"):
        cli.main([*argv, "--num_threads=0"])


def test_policies_and_the_demo_default_to_at_most_four_threads(monkeypatch, restore_threads):
    monkeypatch.delenv(cli.NUM_THREADS_ENV, raising=False)
    monkeypatch.setattr(cli, "usable_cpus", lambda: 64)
    assert cli.policy_num_threads() == 4
    monkeypatch.setattr(cli, "usable_cpus", lambda: 2)
    assert cli.policy_num_threads() == 2
    parser = cli.build_parser()
    for argv in (["collect", "--root_dir=r"], ["demo"]):
        args = parser.parse_args(argv)
        assert args.num_threads is None and args.default_num_threads is cli.policy_num_threads
        cli._apply_num_threads(args)
        assert torch.get_num_threads() == 2
    args = parser.parse_args(["train"])
    assert args.default_num_threads is None  # training keeps torch's default

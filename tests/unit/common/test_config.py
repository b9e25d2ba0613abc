"""Tests for snf.common.config: real files in tmp_path, no mocks."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import traceback
from pathlib import Path
from typing import Any, Literal, get_type_hints

import pytest

from snf.common import config as cfg
from snf.common.config import (
    Config,
    LogConfig,
    StoreConfig,
    load_config,
    main,
    to_toml,
)
from snf.common.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_error(config_dir: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(config_dir)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.exit_code == 2
    return message


# --- files and merging ---------------------------------------------------------------------


def test_missing_dir_means_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "absent")
    assert config == Config()
    assert config.sources == ()
    assert config.store.backend == "dir"
    assert config.store.path == Path("/var/lib/snf/store")
    assert config.log.file is None


def test_empty_dir_means_defaults(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    assert load_config(tmp_path) == Config()


def test_default_dir_is_etc_snf_and_env_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Path("/etc/snf") == cfg.DEFAULT_CONFIG_DIR
    write(tmp_path / "snf.toml", '[store]\nrados_id = "env"\n')
    monkeypatch.setenv("SNF_CONFIG_DIR", str(tmp_path))
    config = load_config()
    assert config.store.rados_id == "env"
    assert config.sources == (tmp_path / "snf.toml",)
    # An explicit directory wins over the environment.
    assert load_config(tmp_path / "absent") == Config()


@pytest.mark.parametrize("env", ["", None])
def test_without_env_the_dir_is_etc_snf(monkeypatch: pytest.MonkeyPatch, env: str | None) -> None:
    if env is None:
        monkeypatch.delenv("SNF_CONFIG_DIR", raising=False)
    else:
        monkeypatch.setenv("SNF_CONFIG_DIR", env)
    try:
        files = [str(path) for path in load_config().sources]
    except ConfigError as exc:  # this machine's own files are not ours to judge
        files = [str(exc)]
    assert all(name.startswith("/etc/snf/") for name in files)


def test_one_file(tmp_path: Path) -> None:
    write(
        tmp_path / "snf.toml",
        """
        [store]
        backend = "rados"
        ceph_conf = "/etc/ceph/other.conf"
        [portal]
        bind = "0.0.0.0:80"
        [network]
        dry_run = true
        [log]
        level = "debug"
        file = "/var/log/snf/snf.log"
        syslog = true
        """.replace("        ", ""),
    )
    config = load_config(tmp_path)
    assert config.sources == (tmp_path / "snf.toml",)
    assert config.store == StoreConfig(backend="rados", ceph_conf=Path("/etc/ceph/other.conf"))
    assert isinstance(config.store.ceph_conf, Path)
    assert config.portal.bind == "0.0.0.0:80"
    assert config.portal.base_url == "http://127.0.0.1:8080"
    assert config.network.dry_run is True
    assert config.log == LogConfig(level="debug", file=Path("/var/log/snf/snf.log"), syslog=True)


def test_dropins_in_name_order_override_key_by_key(tmp_path: Path) -> None:
    main_file = write(tmp_path / "snf.toml", '[store]\nrados_id = "main"\nblocks_pool = "main"\n')
    # Written out of order: the order is the file names', not the creation order.
    late = write(tmp_path / "conf.d" / "20-late.toml", '[store]\nblocks_pool = "late"\n')
    early = write(
        tmp_path / "conf.d" / "10-early.toml",
        '[store]\nblocks_pool = "early"\nmaps_pool = "early"\n[image]\nmode = "direct"\n',
    )
    write(tmp_path / "conf.d" / ".hidden.toml", '[store]\nrados_id = "hidden"\n')
    write(tmp_path / "conf.d" / "README", "not toml at all [")
    write(tmp_path / "conf.d" / "30-old.toml.dpkg-old", "[nonsense")

    config = load_config(tmp_path)
    assert config.sources == (main_file, early, late)
    assert config.store.rados_id == "main"
    assert config.store.blocks_pool == "late"
    assert config.store.maps_pool == "early"
    assert config.store.backend == "dir"
    assert config.image.mode == "direct"


def test_dropins_without_main_file(tmp_path: Path) -> None:
    dropin = write(tmp_path / "conf.d" / "store.toml", '[store]\npath = "/srv/store"\n')
    config = load_config(tmp_path)
    assert config.sources == (dropin,)
    assert config.store.path == Path("/srv/store")


def test_empty_string_unsets_an_optional_path_set_earlier(tmp_path: Path) -> None:
    write(tmp_path / "snf.toml", '[log]\nfile = "/var/log/snf.log"\n')
    assert load_config(tmp_path).log.file == Path("/var/log/snf.log")
    write(tmp_path / "conf.d" / "90-stderr.toml", '[log]\nfile = ""\n')
    assert load_config(tmp_path).log.file is None


# --- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "toml", "expected"),
    [
        ("store", "rados_id", '"client1"', "client1"),
        ("store", "path", '"/srv/snf//store/"', Path("/srv/snf/store")),
        ("store", "backend", '"rados"', "rados"),
        ("network", "dry_run", "true", True),
        ("network", "dry_run", "false", False),
        ("log", "level", '"error"', "error"),
        ("log", "file", '"/var/log/snf.log"', Path("/var/log/snf.log")),
        ("log", "file", '""', None),
    ],
)
def test_good_values(tmp_path: Path, section: str, key: str, toml: str, expected: Any) -> None:
    write(tmp_path / "snf.toml", f"[{section}]\n{key} = {toml}\n")
    assert getattr(load_config(tmp_path).section(section), key) == expected


@pytest.mark.parametrize(
    ("section", "key", "toml", "message"),
    [
        ("store", "rados_id", "1", "[store] rados_id: must be a string, not 1"),
        ("store", "rados_id", "[]", "[store] rados_id: must be a string, not []"),
        ("store", "rados_id", "{ a = 1 }", "[store] rados_id: must be a string, not a table"),
        ("store", "path", '"var/lib/x"', "[store] path: must be an absolute path, not 'var/lib/x'"),
        ("store", "path", '""', "[store] path: must be an absolute path, not ''"),
        ("store", "path", "false", "[store] path: must be an absolute path, not false"),
        (
            "store",
            "backend",
            '"nfs"',
            "[store] backend: must be one of 'dir', 'rados', not 'nfs'",
        ),
        ("network", "dry_run", "1", "[network] dry_run: must be true or false, not 1"),
        ("network", "dry_run", '"yes"', "[network] dry_run: must be true or false, not 'yes'"),
        ("log", "level", '"INFO"', "[log] level: must be one of 'debug', 'info'"),
        ("log", "level", "1", "[log] level: must be one of 'debug', 'info', 'warning', 'error'"),
        ("log", "file", '"log/x"', """[log] file: must be an absolute path, or "" for none"""),
        ("log", "file", "0", """[log] file: must be an absolute path, or "" for none, not 0"""),
        ("image", "mode", "true", "[image] mode: must be one of 'helper', 'direct', not true"),
    ],
)
def test_bad_values(tmp_path: Path, section: str, key: str, toml: str, message: str) -> None:
    path = write(tmp_path / "conf.d" / "10-x.toml", f"[{section}]\n{key} = {toml}\n")
    assert load_error(tmp_path).startswith(f"{path}: {message}")


def test_the_example_message(tmp_path: Path) -> None:
    path = write(tmp_path / "conf.d" / "10-store.toml", '[store]\nbackend = "nfs"\n')
    assert load_error(tmp_path) == (
        f"{path}: [store] backend: must be one of 'dir', 'rados', not 'nfs'"
    )


@pytest.mark.parametrize(
    ("tp", "good", "converted"),
    [
        (int, 3, 3),
        (int, -1, -1),
        (float, 2, 2.0),
        (float, 0.5, 0.5),
        (bool, False, False),
        (str, "", ""),
        (Path, "/a", Path("/a")),
        (Path | None, "", None),
        (Path | None, "/a", Path("/a")),
        (list[str], [], []),
        (list[str], ["a", "b"], ["a", "b"]),
        (Literal["a", 1], 1, 1),
    ],
)
def test_convert_accepts(tp: Any, good: Any, converted: Any) -> None:
    result = cfg._convert(good, tp, "f: [s] k")
    assert result == converted
    assert type(result) is type(converted)


@pytest.mark.parametrize(
    ("tp", "bad", "message"),
    [
        (int, True, "f: [s] k: must be an integer, not true"),
        (int, 1.5, "f: [s] k: must be an integer, not 1.5"),
        (int, "1", "f: [s] k: must be an integer, not '1'"),
        (float, True, "f: [s] k: must be a number, not true"),
        (float, "1.0", "f: [s] k: must be a number, not '1.0'"),
        (bool, 0, "f: [s] k: must be true or false, not 0"),
        (Path, "relative", "f: [s] k: must be an absolute path, not 'relative'"),
        (Path, "/a\0b", "f: [s] k: must be an absolute path, not '/a\\x00b'"),
        (list[str], "a", "f: [s] k: must be a list of strings, not 'a'"),
        (list[str], ["a", 1], """f: [s] k: must be a list of strings, not ["a", 1]"""),
        (Literal["a", 1], True, "f: [s] k: must be one of 'a', 1, not true"),
        (int, "x" * 100, "f: [s] k: must be an integer, not 'xxxx"),
    ],
)
def test_convert_rejects(tp: Any, bad: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg._convert(bad, tp, "f: [s] k")
    assert str(info.value).startswith(message)
    assert len(str(info.value)) < 110
    if len(repr(bad)) > 60:
        assert str(info.value).endswith("...")


def test_every_field_type_is_supported() -> None:
    for name, section in cfg.SECTIONS.items():
        for field in dataclasses.fields(section):
            tp = get_type_hints(section)[field.name]
            assert cfg._expected(tp), (name, field.name)
            default = getattr(section(), field.name)
            if default is not None:
                parsed = tomllib.loads(f"v = {cfg._toml_value(default)}")["v"]
                assert cfg._convert(parsed, tp, "x") == default


# --- mistakes in names and syntax ----------------------------------------------------------


def test_unknown_key_suggests(tmp_path: Path) -> None:
    path = write(tmp_path / "snf.toml", '[store]\npth = "/srv"\n')
    assert load_error(tmp_path) == f"{path}: [store] pth: unknown key; did you mean 'path'?"


def test_unknown_key_without_close_match_lists_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "snf.toml", "[network]\nzzz = 1\n")
    known = "(known: dry_run, state_dir)"
    assert load_error(tmp_path) == f"{path}: [network] zzz: unknown key {known}"


def test_unknown_section_suggests(tmp_path: Path) -> None:
    path = write(tmp_path / "snf.toml", '[stroe]\nbackend = "dir"\n')
    assert load_error(tmp_path) == f"{path}: [stroe]: unknown section; did you mean 'store'?"


def test_unknown_section_without_close_match(tmp_path: Path) -> None:
    write(tmp_path / "snf.toml", "[zzzzzz]\n")
    known = "unknown section (known: store, portal, login, mail, saml, oidc, pithos, compute,"
    assert known in load_error(tmp_path)


def test_key_outside_any_section(tmp_path: Path) -> None:
    path = write(tmp_path / "snf.toml", 'backend = "rados"\n')
    assert load_error(tmp_path) == (
        f"{path}: backend: keys must be inside a [section]; did you mean [store] backend?"
    )


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path / "snf.toml", "store = 1\n")
    assert load_error(tmp_path) == f"{path}: [store]: must be a table, not 1"


def test_odd_key_names_stay_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "snf.toml", '[store]\n"a\\nb" = 1\n')
    assert load_error(tmp_path).startswith(f"{path}: [store] 'a\\nb': unknown key")


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    write(tmp_path / "snf.toml", '[store]\nbackend = "dir"\n')
    bad = write(tmp_path / "conf.d" / "50-bad.toml", "[store\nbackend = 'dir'\n")
    message = load_error(tmp_path)
    assert message.startswith(f"{bad}: invalid TOML: ")
    assert "line 1" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "snf.toml"
    path.write_bytes(b'[store]\nrados_id = "\xff"\n')
    assert load_error(tmp_path).startswith(f"{path}: ")


def test_directory_named_like_a_file(tmp_path: Path) -> None:
    path = tmp_path / "conf.d" / "10-dir.toml"
    path.mkdir(parents=True)
    assert load_error(tmp_path) == f"{path}: cannot read: Is a directory"


def test_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    link = tmp_path / "conf.d" / "10-gone.toml"
    link.symlink_to(tmp_path / "gone.toml")
    assert load_error(tmp_path) == f"{link}: cannot read: No such file or directory"


def _unreadable_checks(base: Path) -> None:
    path = write(base / "snf.toml", "[store]\n")
    path.chmod(0)
    assert load_error(base) == f"{path}: cannot read: Permission denied"
    path.unlink()
    dropins = base / "conf.d"
    dropins.mkdir(mode=0o300)
    assert load_error(base) == f"{dropins}: cannot read directory: Permission denied"
    dropins.chmod(0o700)
    base.chmod(0o600)  # cannot look inside: not the same as "missing"
    try:
        assert load_error(base) == f"{path}: cannot read: Permission denied"
    finally:
        base.chmod(0o700)


def test_unreadable_file_and_directories(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        _unreadable_checks(tmp_path)
        return
    # Root reads files whatever their mode: run the checks as nobody in a forked child.
    base = Path(tempfile.mkdtemp(prefix="snf-config-test-", dir="/tmp"))
    try:
        os.chown(base, 65534, 65534)
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                _unreadable_checks(base)
                status = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(wait_status) == 0, "the checks as nobody failed"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_config_dir_that_is_a_file(tmp_path: Path) -> None:
    path = write(tmp_path / "snf.toml", "")
    with pytest.raises(ConfigError, match="not a directory"):
        load_config(path)


# --- the Config object and rendering -------------------------------------------------------


def test_section_lookup_and_frozen() -> None:
    config = Config()
    assert config.section("store") is config.store
    assert config.section("log") is config.log
    with pytest.raises(KeyError):
        config.section("sources")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.store.backend = "rados"  # type: ignore[misc]


def test_to_toml_round_trips(tmp_path: Path) -> None:
    config = Config(
        store=StoreConfig(backend="rados", rados_id='a"b\\c\x7f\t\u00e9', path=Path("/s p")),
        log=LogConfig(level="warning", file=Path("/var/log/snf.log"), syslog=True),
    )
    text = to_toml(config)
    assert "[archipelagod]\nrun_dir = " in text
    write(tmp_path / "snf.toml", text)
    assert dataclasses.replace(load_config(tmp_path), sources=()) == config


def test_to_toml_renders_none_as_a_comment() -> None:
    text = to_toml(Config(), comments=False)
    assert '[log]\nlevel = "info"\n# file = ""\nsyslog = false\n' in text
    assert "where blocks and maps live" not in text
    assert "where blocks and maps live" in to_toml(Config())


def test_committed_sample_is_the_defaults(tmp_path: Path) -> None:
    sample = REPO / "packaging" / "snf.toml.sample"
    assert sample.read_text(encoding="utf-8") == to_toml(Config()), (
        "regenerate it: snf-config defaults > packaging/snf.toml.sample"
    )
    write(tmp_path / "snf.toml", sample.read_text(encoding="utf-8"))
    assert dataclasses.replace(load_config(tmp_path), sources=()) == Config()


# --- snf-config ----------------------------------------------------------------------------


def test_main_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["defaults"]) == 0
    assert capsys.readouterr().out == to_toml(Config())


def test_main_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "snf.toml", '[store]\nbackend = "rados"\n')
    assert main(["--config-dir", str(tmp_path), "show"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# effective snf configuration")
    assert f"#   {path}\n" in out
    assert '[store]\nbackend = "rados"\n' in out
    body = out.split("\n\n", 1)[1]
    assert body == to_toml(load_config(tmp_path), comments=False)


def test_main_show_without_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config-dir", str(tmp_path), "show"]) == 0
    assert "#   none: all defaults" in capsys.readouterr().out


def test_main_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config-dir", str(tmp_path), "check"]) == 0
    assert capsys.readouterr().out == "ok: 0 files\n"
    write(tmp_path / "snf.toml", "[store]\n")
    assert main(["--config-dir", str(tmp_path), "check"]) == 0
    assert capsys.readouterr().out == "ok: 1 file\n"
    write(tmp_path / "conf.d" / "a.toml", "[log]\n")
    assert main(["--config-dir", str(tmp_path), "check"]) == 0
    assert capsys.readouterr().out == "ok: 2 files\n"


def test_main_check_error_raises(tmp_path: Path) -> None:
    write(tmp_path / "snf.toml", "[store]\nbackend = 1\n")
    with pytest.raises(ConfigError, match="backend: must be one of"):
        main(["--config-dir", str(tmp_path), "check"])


def test_main_needs_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: snf-config" in capsys.readouterr().err


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SNF_DEBUG", "SNF_CONFIG_DIR")}
    code = "from snf.common.config import cli; cli()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_cli_error_is_one_stderr_line(tmp_path: Path) -> None:
    path = write(tmp_path / "conf.d" / "10-store.toml", '[store]\nbackend = "nfs"\n')
    result = run_cli("--config-dir", str(tmp_path), "check")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"snf-config: error: {path}: [store] backend: must be one of 'dir', 'rados', not 'nfs'\n"
    )


def test_cli_syntax_error_is_one_stderr_line(tmp_path: Path) -> None:
    path = write(tmp_path / "snf.toml", "[store]\nbackend = \n")
    result = run_cli("--config-dir", str(tmp_path), "show")
    assert result.returncode == 2
    assert result.stderr.startswith(f"snf-config: error: {path}: invalid TOML: ")
    assert result.stderr.count("\n") == 1


def test_cli_check_and_defaults(tmp_path: Path) -> None:
    write(tmp_path / "snf.toml", "[store]\n")
    result = run_cli("--config-dir", str(tmp_path), "check")
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok: 1 file\n", "")
    result = run_cli("defaults")
    assert (result.returncode, result.stdout) == (0, to_toml(Config()))


def test_cli_usage_error_keeps_argparse_behaviour() -> None:
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "usage: snf-config" in result.stderr

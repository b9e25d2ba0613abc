import pickle

import pytest

from snf.common import errors
from snf.common.rapi import HooksAborted

EXAMPLES = [
    errors.SnfError("plain"),
    errors.ConfigError("/etc/snf/snf.toml: invalid TOML"),
    errors.CommandFailed(["losetup", "-d", "/dev/loop9"], 1, "no such device\n"),
    errors.RapiHttpError(500, "boom", "details"),
    errors.RapiNotFound(404, "no such instance"),
    errors.JobFailed(7, "OpPrereqError", "bad name", "wrong_input"),
    errors.JobTimeout(8, "job 8 did not finish"),
]


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_error_survives_pickling_with_its_attributes(error: errors.SnfError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


def test_hooks_aborted_survives_pickling() -> None:
    exc = HooksAborted(3, [["n1", "instance-add-pre.d/50-x", "refused"]])
    copy = pickle.loads(pickle.dumps(exc))
    assert copy.results == exc.results and copy.detail == exc.detail


def test_command_failed_names_the_program_and_the_last_output_line() -> None:
    exc = errors.CommandFailed(["gnt-instance", "add"], 1, "line one\nFailure: no bridge\n")
    assert str(exc) == "gnt-instance exited with status 1: Failure: no bridge"
    assert exc.output.startswith("line one")


def test_api_facing_classes_carry_openstack_status() -> None:
    assert errors.InvalidInput("x").http_status == 400
    assert errors.NotFound("x").openstack_name == "itemNotFound"
    assert errors.Conflict("x").http_status == 409

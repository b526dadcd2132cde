"""The deployment checks need helm, kubeconform and promtool, built once from the Go module
proxy (tests.support.deploy_tools); without Go they are skipped, any other failure fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import deploy_tools


def need_go() -> None:
    if shutil.which("go") is None:
        pytest.skip("`go` is not installed: the deployment checks build their tools with it")


@pytest.fixture(scope="session")
def tools() -> deploy_tools.Tools:
    need_go()
    try:
        return deploy_tools.ensure()
    except deploy_tools.ToolError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def promtool() -> Path:
    need_go()
    try:
        return deploy_tools.ensure_promtool()
    except deploy_tools.ToolError as error:
        pytest.fail(str(error))

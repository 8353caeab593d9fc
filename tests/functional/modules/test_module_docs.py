"""DOCUMENTATION (with its fragments, as ansible-doc renders it) matches each module's argument spec."""
import importlib
import json
import subprocess

import pytest

from module_runner import ModuleRunner

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._agent_module import ACCOUNT_OPTIONS

MODULES = ("token_redeem", "home_files", "audit_event")
SECRET_OPTIONS = {"token_redeem": {"token"}, "home_files": {"credentials"}, "audit_event": set()}


def argument_spec(module):
    """The spec the module hands to AnsibleModule: its own options plus the shared account options."""
    mod = importlib.import_module("ansible_collections.bootstrap_saas.provisioning.plugins.modules." + module)
    return dict(ACCOUNT_OPTIONS, **mod.OPTIONS)


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    runner = ModuleRunner(tmp_path_factory.mktemp("doc"))
    names = ["bootstrap_saas.provisioning." + m for m in MODULES]
    proc = subprocess.run(["ansible-doc", "--json", "-t", "module", *names], env=runner.env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("module", MODULES)
def test_documentation_matches_the_argument_spec(docs, module):
    doc = docs["bootstrap_saas.provisioning." + module]
    options = doc["doc"]["options"]
    spec = argument_spec(module)
    assert set(options) == set(spec)
    for name, arg in spec.items():
        documented = options[name]
        assert documented["type"] == arg.get("type", "str"), name
        assert bool(documented.get("required", False)) == bool(arg.get("required", False)), name
        assert documented.get("default") == arg.get("default"), name
        assert documented.get("choices") == arg.get("choices"), name
        assert documented.get("elements") == arg.get("elements"), name
    assert {n for n, a in spec.items() if a.get("no_log")} == SECRET_OPTIONS[module]
    attributes = doc["doc"]["attributes"]
    assert attributes["check_mode"]["support"] == "full"
    assert attributes["diff_mode"]["support"] in ("full", "none")
    assert doc["examples"] and doc["return"]

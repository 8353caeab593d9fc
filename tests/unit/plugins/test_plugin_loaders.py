"""Every plugin of the collection resolves through Ansible's own loaders by its FQCN, from this collection,
and its documentation parses (the way ansible-doc and ansible-playbook find them)."""
import os
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleLookupError
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import action_loader, init_plugin_loader, lookup_loader, module_loader
from ansible.utils.plugin_docs import read_docstring

COLLECTION = "bootstrap_saas.provisioning"
ROOT = Path(__file__).resolve().parents[3]
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))
ACTIONS = sorted(p.stem for p in (ROOT / "plugins" / "action").glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module", autouse=True)
def loaders():
    # tests/conftest.py points ANSIBLE_COLLECTIONS_PATH at this checkout; a no-op under ansible-test,
    # which has configured the collection loader already.
    # In one pytest process with the other suites, ansible_collections may already be imported as a
    # plain namespace package (through sys.path); the collection loader must own it to resolve FQCNs.
    package = sys.modules.get("ansible_collections")
    if package is not None and not type(getattr(package, "__loader__", None)).__module__.startswith(
            "ansible.utils.collection_loader"):
        for name in [m for m in sys.modules if m == "ansible_collections" or m.startswith("ansible_collections.")]:
            del sys.modules[name]
    init_plugin_loader(os.environ["ANSIBLE_COLLECTIONS_PATH"].split(os.pathsep))


def test_every_module_file_is_found_here():
    assert {"token_verify", "token_redeem", "home_files", "audit_event"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_resolves_by_fqcn_and_its_documentation_parses(name):
    context = module_loader.find_plugin_with_context("%s.%s" % (COLLECTION, name))
    assert context.resolved, context.redirect_list
    assert Path(context.plugin_resolved_path).resolve() == (ROOT / "plugins" / "modules" / (name + ".py")).resolve()
    doc = read_docstring(context.plugin_resolved_path)
    assert doc["doc"]["module"] == name
    assert doc["doc"]["short_description"]
    assert yaml.safe_load(doc["plainexamples"]), "EXAMPLES must hold at least one task"
    assert doc["returndocs"] is not None


@pytest.mark.parametrize("name", ACTIONS)
def test_action_resolves_by_fqcn_to_an_action_plugin(name):
    cls = action_loader.get("%s.%s" % (COLLECTION, name), class_only=True)
    assert cls is not None
    assert issubclass(cls, ActionBase)
    assert Path(action_loader.find_plugin("%s.%s" % (COLLECTION, name))).resolve() == \
        (ROOT / "plugins" / "action" / (name + ".py")).resolve()


def test_credential_lookup_loads_and_refuses_an_empty_call():
    lookup = lookup_loader.get("%s.credential" % COLLECTION)
    assert lookup is not None
    with pytest.raises(AnsibleLookupError, match="at least one credential name"):
        lookup.run([], variables={})

"""Make the checkout importable and runnable as the collection bootstrap_saas.provisioning.

Ansible finds collections only under ``ansible_collections/NAMESPACE/NAME``; the tests link the
checkout into ``.build/collections`` and point both Python and ansible-playbook at it.
"""
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# A checkout that already sits at ansible_collections/NAMESPACE/NAME (ansible-test's copy) is used in place.
IN_PLACE = REPO.parent.parent.name == "ansible_collections"
COLLECTIONS = REPO.parents[2] if IN_PLACE else REPO / ".build" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "bootstrap_saas" / "provisioning"


def _link_collection():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    if LINK.is_symlink() and Path(os.readlink(LINK)) == REPO:
        return
    if LINK.is_symlink() or LINK.exists():
        LINK.unlink()
    LINK.symlink_to(REPO)


if not IN_PLACE:
    _link_collection()
sys.path.insert(0, str(COLLECTIONS))
sys.path.insert(0, str(REPO / "tests"))
os.environ["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)

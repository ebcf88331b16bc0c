"""The data directory given through a symbolic link: served, and kept across a restart."""

from __future__ import annotations

import os
from dataclasses import replace

from drophost.settings import Settings
from tests.harness.stacks import running_stack
from tests.integration.support import deploy_site, hashes, served, site


def test_a_data_dir_reached_through_a_link_is_served_and_kept(settings: Settings) -> None:
    alias = settings.data_dir.parent / (settings.data_dir.name + "-link")
    os.symlink(settings.data_dir, alias)
    through_link = replace(settings, data_dir=alias)
    one = site("one")
    with running_stack(through_link) as stack:
        deploy_site(stack, one)
        # Served through the resolved path: the link to the data directory is not in nginx's paths.
        assert served(stack, "site", list(one)) == hashes(one)
    # Started again by the other name: nothing is taken for an orphan.
    with running_stack(settings) as stack:
        assert served(stack, "site", list(one)) == hashes(one)
    alias.unlink()

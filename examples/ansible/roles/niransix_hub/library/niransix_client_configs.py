#!/usr/bin/python
# -*- coding: utf-8 -*-
"""The niransix_hub role's module: a hub's client configs into one directory, in one run."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: niransix_client_configs
short_description: Keeps a directory equal to a niransix hub's client configs
description:
  - Writes each config as C(<path>/<name>.conf), mode 0600, only when its content or mode
    differs; removes the C(*.conf) files of names not given. The directory is made (0700) when
    missing.
  - One run for every config of a hub, whatever their number (a file module or copy per config
    costs a module run each).
  - The configs hold keys; the module never returns or shows their text. With C(--diff) it shows
    the names it writes or removes.
options:
  path:
    description: The directory.
    type: path
    required: true
  configs:
    description: Each peer's config text by peer name (what C(niransix-hub peer conf --all) prints).
    type: dict
    required: true
  predicted:
    description:
      - In check mode, names whose configs do not exist yet but will be written by the real run
        (the hub's sync only planned those peers): counted as written. Ignored outside check mode.
    type: list
    elements: str
    default: []
author: niransix
"""

RETURN = r"""
written:
  description: The names whose configs were (or, in check mode, would be) written.
  type: list
  elements: str
  returned: always
removed:
  description: The names whose configs were (or would be) removed.
  type: list
  elements: str
  returned: always
"""

import os
import re
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

# A hub peer name: letters, digits, "_" or "-", not leading "-" (never a path).
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
MODE = 0o600


def differs(path, text):
    """Whether the file at PATH is missing, holds other bytes than TEXT, or is not 0600."""
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            held = f.read()
    except FileNotFoundError:
        return True
    return held != text.encode() or stat.S_IMODE(st.st_mode) != MODE


def write(directory, name, text):
    """TEXT into DIRECTORY/NAME.conf, 0600 from its first byte, replaced whole (a reader never
    sees half a config)."""
    fd, tmp = tempfile.mkstemp(prefix=".%s." % name, dir=directory)
    try:
        os.fchmod(fd, MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(directory, name + ".conf"))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            configs=dict(type="dict", required=True, no_log=True),
            predicted=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    directory = module.params["path"]
    configs = module.params["configs"]
    bad = [n for n in list(configs) + module.params["predicted"] if not NAME.match(n)]
    if bad:
        module.fail_json(msg="not a peer name: %s" % ", ".join(sorted(bad)))
    held = []
    if os.path.isdir(directory):
        held = sorted(f[: -len(".conf")] for f in os.listdir(directory) if f.endswith(".conf"))
    written = sorted(n for n, text in configs.items() if differs(os.path.join(directory, n + ".conf"), text))
    if module.check_mode:
        written = sorted(set(written) | set(module.params["predicted"]))
    removed = [n for n in held if n not in configs and n not in written]
    changed = bool(written or removed)
    if changed and not module.check_mode:
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o700)
            for n in written:
                write(directory, n, configs[n])
            for n in removed:
                os.unlink(os.path.join(directory, n + ".conf"))
        except OSError as e:
            module.fail_json(msg="%s: %s" % (directory, e), written=[], removed=[])
    diff = dict(
        before="".join("%s.conf\n" % n for n in sorted(set(held) & (set(written) | set(removed)))),
        after="".join("%s.conf\n" % n for n in written),
        before_header="%s (configs replaced or removed)" % directory,
        after_header="%s (configs written)" % directory,
    )
    module.exit_json(changed=changed, written=written, removed=removed, diff=diff)


if __name__ == "__main__":
    main()

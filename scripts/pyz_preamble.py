"""Runs inside owlmetry.pyz at every start, before the entry point (shiv's --preamble).

Owns one check: that this Python can load the compiled dependencies the pyz carries. Without
it, the wrong Python fails deep in an import (uvloop, orjson, ...) with a traceback that does
not say why. scripts/build-pyz writes the target beside this file.
"""

import json
import platform
import sys
import sysconfig
from pathlib import Path

target = json.loads(Path(__file__).with_name("owlmetry-pyz-target.json").read_text())
# EXT_SUFFIX names exactly what a compiled module needs: implementation, version, ABI, platform
# (".cpython-311-x86_64-linux-gnu.so").
if sysconfig.get_config_var("EXT_SUFFIX") != target["ext_suffix"]:
    sys.exit(
        f"owlmetry.pyz: error: built for {target['implementation']} {target['python']} "
        f"({target['ext_suffix']}), but this is {platform.python_implementation()} "
        f"{platform.python_version()} ({sysconfig.get_config_var('EXT_SUFFIX')}); run it with "
        f"Python {target['python']}, or build one for this Python with scripts/build-pyz"
    )

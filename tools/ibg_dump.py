#!/usr/bin/env python3
"""`ibg-audit dump` under the name tools/ibg_dump. Re-runs itself with the project's .venv when needed."""
import os
import sys
from pathlib import Path

tools = Path(__file__).resolve().parent
if Path(sys.prefix).resolve() != (tools.parent / ".venv").resolve():
    os.execv(str(tools / "ibg_dump"), [str(tools / "ibg_dump"), *sys.argv[1:]])

from ibg_audit.cli import dump_main  # noqa: E402

dump_main()

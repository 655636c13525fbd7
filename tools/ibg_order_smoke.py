#!/usr/bin/env python3
"""`ibg-audit smoke` under the name tools/ibg_order_smoke. Re-runs itself with the project's .venv when needed."""
import os
import sys
from pathlib import Path

tools = Path(__file__).resolve().parent
if Path(sys.prefix).resolve() != (tools.parent / ".venv").resolve():
    os.execv(str(tools / "ibg_order_smoke"), [str(tools / "ibg_order_smoke"), *sys.argv[1:]])

from ibg_audit.cli import smoke_main  # noqa: E402

smoke_main()

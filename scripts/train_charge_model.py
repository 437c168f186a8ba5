"""Train the ML charge model: ``python -m hybridff.charges.model.train`` does it; this script is
the same command, kept for old instructions.

    python scripts/train_charge_model.py [options]    # = python -m hybridff.charges.model.train

The training writes the model file and a metrics JSON (numbers); ``docs/charges.md`` is a
static page that reports them. ``--docs`` and ``--docs-only`` are gone: ``--metrics PATH``
names the JSON, ``--metrics-only`` writes it from an existing model file.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybridff.charges.model.train import main  # noqa: E402

if __name__ == "__main__":
    if gone := [a for a in sys.argv[1:] if a.split("=")[0] in ("--docs", "--docs-only")]:
        sys.exit(f"{gone[0]}: the training no longer writes docs/charges.md (a static page now); "
                 "use --metrics PATH for the metrics JSON, --metrics-only to write it from a model")
    sys.exit(main())

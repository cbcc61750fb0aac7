"""Write each command's --help into docs/cli.md, so the reference never drifts.

docs/cli.md holds the prose; between `<!-- help: COMMAND -->` and `<!-- /help -->` it
holds `rrsgan-geo COMMAND --help` as the installed package prints it (100 columns).
The test suite checks that the file is what this script would write.

    python docs/make_cli_reference.py          # rewrite the blocks
    python docs/make_cli_reference.py --check  # exit 1 if a block is out of date
"""

import re
import sys
from pathlib import Path

from click.testing import CliRunner

from rrsgan_geo.cli.main import main

CLI_MD = Path(__file__).resolve().parent / "cli.md"
BLOCK = re.compile(r"(<!-- help: ([\w -]+) -->\n).*?(<!-- /help -->)", re.DOTALL)
WIDTH = 100


def help_text(command: str) -> str:
    """`rrsgan-geo COMMAND --help` at `WIDTH` columns."""
    result = CliRunner().invoke(
        main, [*command.split(), "--help"], prog_name="rrsgan-geo", terminal_width=WIDTH
    )
    if result.exit_code != 0:
        raise SystemExit(f"rrsgan-geo {command} --help failed: {result.output}")
    return result.output


def rendered(text: str) -> str:
    """docs/cli.md's text with every help block filled in afresh."""

    def fill(match: re.Match) -> str:
        command = match.group(2).strip()
        body = f"```text\n$ rrsgan-geo {command} --help\n{help_text(command)}```\n"
        return match.group(1) + body + match.group(3)

    return BLOCK.sub(fill, text)


def main_(check: bool) -> int:
    current = CLI_MD.read_text()
    fresh = rendered(current)
    if check:
        if fresh != current:
            print(f"{CLI_MD} is out of date: run python docs/make_cli_reference.py")
            return 1
        return 0
    CLI_MD.write_text(fresh)
    print(f"wrote {CLI_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main_("--check" in sys.argv[1:]))

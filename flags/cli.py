"""Running a command: its own flags, `--help` that exits 0, and one error boundary.

Every entry point is `cli.main(PROGRAM, __doc__, define, command)`: `define(values)` declares the
command's flags on a fresh `absl.flags.FlagValues` (not the global `FLAGS`, so several commands
can run in one process, as the tests do through `cli.run`), and `command(values)` does the work
(`command(values, args)` for commands with positional `arguments`). The dict it returns is
printed as one JSON line, last, unless the command has a `--json` flag that is off.

The boundary turns every exception class defined in this project (an error that names its file
or flag and its problem) and the operating system's file errors (missing file, permission, full
disk) into one line `PROGRAM: error: ...` and exit status 1; bad flags exit 2, Ctrl-C exits 130.
A project exception with an `exit_status` is a command stopped on request after saving its work
(`train.preemption.Preempted`: a signal): its line is `PROGRAM: MESSAGE`, its status that one.
Anything else is a bug: its line, then its traceback.
"""

import errno
import json
import sys
import traceback

from absl import flags

PROJECT_PACKAGES = ("data", "models", "train", "eval", "flags")
USAGE, FAILURE, INTERRUPTED = 2, 1, 130


class UsageError(ValueError):
    """A bad flag value or combination; exit status 2."""


def _file_error(error):
    """`path: problem` for the operating system's errors about a file, else None."""
    if not isinstance(error, OSError) or error.errno is None:
        return None
    reason = {errno.ENOSPC: "no space left on the device (disk full)", errno.EDQUOT: "disk quota exceeded",
              errno.EFBIG: "file too large for this filesystem or limit"}.get(error.errno, error.strerror)
    return f"{error.filename}: {reason}" if error.filename else reason


def describe(error):
    """The one line for a known failure, or None for an unexpected one (a bug)."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    module = type(error).__module__.split(".")[0]
    if module in PROJECT_PACKAGES or module == "__main__":  # `python -m data.prepare` defines its classes in __main__
        return str(error).strip() or type(error).__name__
    return _file_error(error)


def run(program, doc, define, command, argv, arguments=None):
    """Parses `argv` (`argv[0]` is the program) into the command's flags and runs `command`;
    returns the exit status. Output goes to stdout, errors to stderr, one line each. `arguments`
    names the positional arguments the command takes (None: it takes none)."""
    values = flags.FlagValues()
    flags.DEFINE_bool("help", False, "Show this help and exit.", flag_values=values, short_name="h")
    define(values)
    try:
        args = values(list(argv))[1:]
    except flags.Error as error:
        print(f"{program}: error: {error} (see --help)", file=sys.stderr)
        return USAGE
    if values.help:
        print(f"{doc.strip()}\n\nFlags:\n{values.get_help(include_special_flags=False)}")
        return 0
    flags.FLAGS.mark_as_parsed()  # absl logging (used by TensorFlow) then stops warning about unparsed flags
    try:
        if args and arguments is None:
            raise UsageError(f"unexpected arguments: {' '.join(args)}")
        result = command(values, args) if arguments else command(values)
        if result is not None and ("json" not in values or values.json):
            print(json.dumps(result, default=str))
    except UsageError as error:
        print(f"{program}: error: {error} (see --help)", file=sys.stderr)
        return USAGE
    except (Exception, KeyboardInterrupt) as error:  # noqa: B902 - this is the boundary
        line = describe(error)
        if line is not None and getattr(error, "exit_status", None):  # stopped on request, its work saved
            print(f"{program}: {line}", file=sys.stderr)
            return error.exit_status
        if line is None:
            print(f"{program}: error: unexpected {type(error).__name__}: {error}", file=sys.stderr)
            traceback.print_exc()
            return FAILURE
        print(f"{program}: error: {line}", file=sys.stderr)
        return INTERRUPTED if isinstance(error, KeyboardInterrupt) else FAILURE
    return 0


def main(program, doc, define, command, arguments=None):
    """`run` on the process's arguments, then exit with its status."""
    sys.exit(run(program, doc, define, command, sys.argv, arguments))

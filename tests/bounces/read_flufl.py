"""Reads each bounce file named on the command line with flufl.bounce (Debian python3-flufl.bounce)
and prints one line per file: `file<TAB>temporary<TAB>permanent<TAB>scanned`: the addresses
all_failures() found failing temporarily and permanently, then those scan_message() found (the
permanent failures, its one-call answer), each a comma-separated sorted list. Used by
tests/bounces.rs."""
import email
import sys

from flufl.bounce import all_failures, scan_message

for path in sys.argv[1:]:
    with open(path, "rb") as f:
        message = email.message_from_binary_file(f)
    temporary, permanent = all_failures(message)
    scanned = scan_message(message)
    name = path.rsplit("/", 1)[-1]
    decode = lambda found: ",".join(sorted(a.decode() for a in found))
    print(f"{name}\t{decode(temporary)}\t{decode(permanent)}\t{decode(scanned)}")
